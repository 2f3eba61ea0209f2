"""Files that appear whole or not at all, digests, and scratch directories removed without harm."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(final: Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it into place on success.

    On any exception (Ctrl-C included) the temporary file is removed and
    ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if mode is not None and tmp.exists():
            tmp.chmod(mode)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def held_exclusively(path: Path, on_wait: Callable[[], None]) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing); call ``on_wait`` first if another holds it.

    The kernel drops the lock when the holder dies, so a killed process never leaves it held.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def atomic_write(final: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Write ``data`` to ``final`` atomically with permissions ``mode``."""
    payload = data.encode() if isinstance(data, str) else data
    with atomic_path(final) as tmp:
        # Open with the final mode from the start so a secret is never
        # readable by others, not even briefly.
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC, mode)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (images are gigabytes)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path`` in this mount namespace, deepest first (from /proc/self/mountinfo)."""
    root = Path(os.path.realpath(path))
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            # field 5 is the mount point, with spaces etc. escaped as octal (\040)
            point = Path(line.split()[4].encode().decode("unicode_escape"))
            if point == root or root in point.parents:
                found.append(point)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def processes_using(path: Path) -> list[int]:
    """Processes (not this one) whose command line names a file under ``path`` or whose cwd is under it."""
    root = os.path.realpath(path)
    prefix = root.rstrip("/") + "/"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:  # gone, or not ours to read
            continue
        named = any(prefix.encode() in a or a == root.encode() for a in args)
        if named or cwd == root or cwd.startswith(prefix):
            found.append(int(entry.name))
    return found


def stop_processes(pids: list[int], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL whatever still runs after ``grace`` seconds."""
    import signal
    import time

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            pids = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
            if not pids:
                return
            time.sleep(0.1)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def remove_work_dir(path: Path) -> None:
    """Remove a build's scratch directory, with what a killed build left running and mounted in it.

    A build killed with SIGKILL leaves its packer, packer's qemu and the
    suite's qemu running (they are in their own sessions, so that Ctrl-C is
    handled in order) and its loop mount in place. They are stopped by what
    they name (their disks, pid files, var files are all under ``path``),
    then the mounts are detached (lazily: a dead process's loop device may
    still hold one), then the tree goes. Without the unmount, removing the
    tree would delete files through a mount.
    """
    import subprocess

    if not path.exists():
        return
    stop_processes(processes_using(path))
    for point in mounts_under(path):
        subprocess.run(["umount", "--lazy", str(point)], check=False, capture_output=True)
    if mounts_under(path):
        from nodeimage.log import die

        die(f"cannot remove {path}: something is still mounted in it", hint=f"see `findmnt -R {path}`")
    shutil.rmtree(path, ignore_errors=True)


def check_writable_dir(path: Path, what: str, *, output_root: bool = False) -> None:
    """``path`` exists (or can be created) and a file can be written in it; die naming it otherwise.

    An ``output_root`` that does not exist is created and marked as nodeimage's (see nodeimage.outputs).
    """
    from nodeimage.log import die
    from nodeimage.outputs import make_output_root

    try:
        if output_root:
            make_output_root(path)
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".nodeimage-write-test-"):
            pass
    except FileExistsError:
        die(f"{what} {path} is not a directory", hint="give a directory (or a path where one can be created)")
    except OSError as exc:
        die(
            f"{what} {path} is not writable: {exc.strerror or exc}",
            hint="choose another directory (e.g. --out /var/tmp/nodeimage), free space, or fix its permissions",
        )
