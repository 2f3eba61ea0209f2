"""Shutdown residue is scrubbed from an image tree; everything else is left alone."""

from __future__ import annotations

from pathlib import Path

from nodeimage.scrub import scrub_shutdown_residue


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    files = {
        "var/log/wtmp": b"login record",
        "var/log/lastlog": b"x" * 10,
        "var/log/btmp": b"",
        "etc/machine-id": b"0123456789abcdef0123456789abcdef\n",
        "var/lib/systemd/random-seed": b"secret entropy",
        "var/lib/systemd/timers/stamp-apt-daily.timer": b"",
        "var/log/journal/abc/system.journal": b"journal",
        "var/lib/dhcp/dhclient.eth0.leases": b"lease",
        "var/cache/ldconfig/aux-cache": b"inodes and ctimes",
        "etc/hostname": b"localhost\n",
        "var/log/apt/history.log": b"kept: not shutdown residue",
    }
    for rel, data in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)
    return tree


def test_scrubs_shutdown_state(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    changed = scrub_shutdown_residue(tree)
    assert (tree / "var/log/wtmp").read_bytes() == b""
    assert (tree / "var/log/lastlog").read_bytes() == b""
    assert (tree / "etc/machine-id").read_bytes() == b""
    assert not (tree / "var/lib/systemd/random-seed").exists()
    assert (tree / "var/lib/systemd/timers").is_dir() and not any((tree / "var/lib/systemd/timers").iterdir())
    assert (tree / "var/log/journal").is_dir() and not any((tree / "var/log/journal").iterdir())
    assert not any((tree / "var/lib/dhcp").iterdir())
    assert not (tree / "var/cache/ldconfig/aux-cache").exists()
    assert "var/log/wtmp" in changed and "var/lib/systemd/random-seed" in changed
    assert "var/log/btmp" not in changed  # already empty: not reported as changed


def test_leaves_the_rest_alone(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    scrub_shutdown_residue(tree)
    assert (tree / "etc/hostname").read_bytes() == b"localhost\n"
    assert (tree / "var/log/apt/history.log").read_bytes() == b"kept: not shutdown residue"


def test_second_run_changes_nothing(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    scrub_shutdown_residue(tree)
    assert scrub_shutdown_residue(tree) == []
