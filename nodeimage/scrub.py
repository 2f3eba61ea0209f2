"""Scrub what the build VM's own shutdown wrote after provision/99-generalise.sh ran,
and caches whose content depends on the build machine's inode numbers.

Packer logs in once more to run the shutdown command, and systemd saves state
while it powers off: a login and shutdown record in wtmp, a new random seed
(which every clone would share), timer stamps, the journal. Generalisation in
the VM cannot remove what is written after it, so the build removes it from the
image's file tree before the filesystem is rebuilt (nodeimage.disk.normalise_image).
"""

from __future__ import annotations

from pathlib import Path

from nodeimage.log import debug

# Emptied, not removed: their absence would make the next login or boot complain.
TRUNCATE = ("var/log/wtmp", "var/log/btmp", "var/log/lastlog", "var/log/faillog", "etc/machine-id")
# Removed (files, or the contents of directories): state written at shutdown.
REMOVE = (
    "var/lib/systemd/random-seed",
    "var/lib/systemd/credential.secret",
    "var/lib/systemd/timesync/clock",
    "var/lib/systemd/timers",
    "var/log/journal",
    "var/lib/dhcp",
    # ldconfig's cache of inode numbers and ctimes: differs on every build, rebuilt on demand
    "var/cache/ldconfig/aux-cache",
)


def scrub_shutdown_residue(tree: Path) -> list[str]:
    """Empty or remove shutdown-written state under ``tree``; return what changed (relative paths)."""
    changed: list[str] = []
    for rel in TRUNCATE:
        path = tree / rel
        if path.is_file() and not path.is_symlink() and path.stat().st_size > 0:
            path.write_bytes(b"")
            changed.append(rel)
    for rel in REMOVE:
        path = tree / rel
        if path.is_symlink() or path.is_file():
            path.unlink()
            changed.append(rel)
        elif path.is_dir():
            for child in sorted(path.iterdir()):
                _remove(child)
                changed.append(str(child.relative_to(tree)))
    debug(f"scrubbed from the image tree: {', '.join(changed) or 'nothing'}")
    return changed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            _remove(child)
        path.rmdir()
    else:
        path.unlink()
