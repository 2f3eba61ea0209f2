"""Processes that look like qemu to nodeimage's pid checks: a copy of the Python interpreter named qemu-system-x86_64.

`invoke down` and `clean` stop or spare a process only when /proc/<pid>/cmdline reads as a qemu that names
the VM's pid file; these helpers let the unit and integration tests start such processes without qemu.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path


def interpreter_named_qemu(directory: Path) -> Path:
    """A copy of the running interpreter at ``directory``/qemu-system-x86_64."""
    path = directory / "qemu-system-x86_64"
    shutil.copy(os.path.realpath(sys.executable), path)
    return path


def wait_exec(pid: int, program: str) -> None:
    """Until exec, /proc/<pid>/cmdline is still the parent's: wait, or `down` would rightly not know the process."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == os.fsencode(program):
                return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} did not exec {program}")
