"""SSH into a booted VM: the command line, running a command, and waiting until the guest answers.

Every VM forwards SSH to a port on 127.0.0.1 and has throwaway host keys, so
host keys are never checked or recorded. A guest that stops while it is
waited for, or never answers, is reported with the tail of its serial
console: the first place to look when a boot goes wrong.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

from nodeimage.log import NodeimageError, die, info
from nodeimage.procs import is_running
from nodeimage.run import run
from nodeimage.vm import VM, serial_tail


def ssh_command(vm: VM, *, user: str, key: Path) -> list[str]:
    """The ssh command that reaches ``vm`` (printed for users, used by :func:`ssh_run`)."""
    return [
        "ssh",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR",
        "-o", "ConnectTimeout=10",
        "-i", str(key),
        "-p", str(vm.ssh_port),
        f"{user}@127.0.0.1",
    ]  # fmt: skip


def wait_for_ssh(vm: VM, *, user: str, key: Path, timeout: float = 600, every: float = 15) -> None:
    """Poll until ``user`` can run a command on ``vm``; die with the serial console's tail if not."""
    start_t = time.monotonic()
    last_report = start_t
    while True:
        elapsed = time.monotonic() - start_t
        if not is_running(vm.pid):
            die(
                f"vm {vm.name} stopped while waiting for SSH (after {elapsed:.0f} s); last serial output:\n"
                + serial_tail(vm),
                hint=f"full console log: {vm.serial_log}",
            )
        try:
            proc = run([*ssh_command(vm, user=user, key=key), "true"], check=False, capture=True, timeout=60)
            ok = proc.returncode == 0
        except NodeimageError:  # this attempt timed out: a slow guest, try again
            ok = False
        if ok:
            info(f"vm {vm.name}: SSH is up after {elapsed:.0f} s")
            return
        elapsed = time.monotonic() - start_t
        if elapsed > timeout:
            die(
                f"vm {vm.name}: no SSH on 127.0.0.1:{vm.ssh_port} after {timeout:.0f} s; last serial output:\n"
                + serial_tail(vm),
                hint=f"full console log: {vm.serial_log}",
            )
        if time.monotonic() - last_report >= every:
            info(f"waiting for SSH on vm {vm.name} ({elapsed:.0f} s) …")
            last_report = time.monotonic()
        time.sleep(3)


def ssh_run(
    vm: VM, user: str, key: Path, cmd: list[str], *, check: bool = True, timeout: float | None = 300
) -> subprocess.CompletedProcess[bytes]:
    """Run ``cmd`` on ``vm`` over SSH (quoted for the remote shell) and capture its output."""
    remote = shlex.join(cmd)
    return run([*ssh_command(vm, user=user, key=key), remote], check=check, capture=True, timeout=timeout)
