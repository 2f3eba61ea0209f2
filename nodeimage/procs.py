"""Processes nodeimage leaves running (qemu VMs, the private network hub) and finds again by pid file.

They outlive the command that started them, so a later command knows them
only by a pid file. A pid can be reused by an unrelated process once ours
exited, so a pid is trusted only after its ``/proc/<pid>/cmdline`` shows it
is ours (see ``vm.is_our_qemu`` and ``privnet.is_our_hub``), and zombies
count as gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def is_running(pid: int) -> bool:
    if pid <= 1:  # 0 and -1 would address process groups; 1 is init: never a VM of ours
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); treat it as gone.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    # So does a zombie whose parent is another process (a qemu killed by `down` run from elsewhere).
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def wait_gone(pid: int, seconds: float) -> bool:
    """Whether ``pid`` is gone within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not is_running(pid):
            return True
        time.sleep(0.3)
    return not is_running(pid)


def terminate(pid: int, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds (the caller has checked that ``pid`` is ours)."""
    if not is_running(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not wait_gone(pid, grace):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_gone(pid, 5)


def read_pidfile(path: Path) -> int | None:
    """The pid in a pid file, or None when there is no such file or it holds no usable pid."""
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 1 else None


def cmdline(pid: int) -> list[bytes]:
    """The arguments of ``pid`` as /proc shows them ([] when it is gone or not ours to read)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return []


def describe_process(pid: int) -> str:
    """A process's command line for messages (shortened)."""
    text = " ".join(os.fsdecode(a) for a in cmdline(pid))
    return (text[:120] + " …") if len(text) > 120 else text or "(gone)"
