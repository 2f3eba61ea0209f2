"""Which accelerator a VM will really get: a probe, not the existence of /dev/kvm.

On some hosts /dev/kvm exists but a guest does not run under it (nested
virtualisation off, or a paravirtual KVM). So the probe boots a guest under
KVM with a deadline and falls back to TCG when it does not come back.

The probe guest is a 512-byte boot sector assembled below: it prints a marker
on the serial port and leaves qemu through the isa-debug-exit device. When a
Linux kernel is at hand (``kernel=``), the probe boots that instead, which also
catches hosts where real-mode code runs but a kernel hangs.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nodeimage.log import debug
from nodeimage.run import which

MARKER = b"NODEIMAGE-PROBE-OK"
PROBE_TIMEOUT_S = 15.0


def find_probe_kernel() -> Path | None:
    """A Linux kernel to probe with: $NODEIMAGE_PROBE_KERNEL, else the newest readable /boot/vmlinuz-*."""
    explicit = os.environ.get("NODEIMAGE_PROBE_KERNEL")
    if explicit:
        return Path(explicit)
    kernels = sorted(p for p in Path("/boot").glob("vmlinuz-*") if os.access(p, os.R_OK))
    return kernels[-1] if kernels else None


def probe_boot_sector() -> bytes:
    """A boot sector that writes MARKER to COM1 and exits qemu via isa-debug-exit."""
    code = bytes.fromhex(
        "fa"  # cli
        "31c0"  # xor ax, ax
        "8ed8"  # mov ds, ax
        "fc"  # cld
        "be1d7c"  # mov si, 0x7c1d (the message)
        "baf803"  # mov dx, 0x3f8
        "ac"  # .loop: lodsb
        "84c0"  # test al, al
        "7403"  # jz .done
        "ee"  # out dx, al
        "ebf8"  # jmp .loop
        "baf400"  # .done: mov dx, 0xf4
        "b010"  # mov al, 0x10
        "ee"  # out dx, al   (qemu exits with status (0x10 << 1) | 1)
        "f4"  # hlt
        "ebfd"  # jmp hlt
    )
    assert len(code) == 0x1D
    sector = code + MARKER + b"\n\0"
    return sector.ljust(510, b"\0") + b"\x55\xaa"


@dataclass(frozen=True)
class AccelReport:
    accelerator: str  # "kvm" or "tcg"
    kvm_usable: bool
    reason: str


def _boots(accel: str, workdir: Path, kernel: Path | None, timeout: float) -> tuple[bool, str]:
    qemu = which("qemu-system-x86_64", "qemu-system-x86")
    cmd = [qemu, "-accel", accel, "-nodefaults", "-display", "none", "-no-reboot", "-m", "256", "-serial", "stdio"]
    if kernel is not None:
        cmd += ["-kernel", str(kernel), "-append", "console=ttyS0 panic=-1 quiet"]
        success = b"Kernel panic"  # no root filesystem: reaching the panic means the kernel ran
    else:
        disk = workdir / "probe.img"
        disk.write_bytes(probe_boot_sector())
        cmd += ["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-drive", f"format=raw,file={disk},if=ide"]
        success = MARKER
    debug("+ " + " ".join(cmd))
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        seen = success in (exc.stdout or b"")
        return seen, "" if seen else f"no sign of life from the guest within {timeout:.0f}s"
    if success in proc.stdout:
        return True, ""
    err = proc.stderr.decode(errors="replace").strip().splitlines()
    return False, (err[-1] if err else f"qemu exited with {proc.returncode} without the guest's marker")


def probe(kernel: Path | None = None, timeout: float = PROBE_TIMEOUT_S) -> AccelReport:
    """Boot a probe guest under KVM; report KVM only if it really ran."""
    kernel = kernel or find_probe_kernel()
    if os.environ.get("NODEIMAGE_ACCEL") in ("kvm", "tcg"):
        forced = os.environ["NODEIMAGE_ACCEL"]
        return AccelReport(forced, forced == "kvm", f"forced by NODEIMAGE_ACCEL={forced}")
    if not Path("/dev/kvm").exists():
        return AccelReport("tcg", False, "/dev/kvm does not exist")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return AccelReport("tcg", False, "/dev/kvm is not readable and writable by this user")
    with tempfile.TemporaryDirectory(prefix="nodeimage-probe-") as tmp:
        ok, why = _boots("kvm", Path(tmp), kernel, timeout)
    if ok:
        if kernel is None:
            caveat = "no kernel found to probe with: a kernel may still hang"
            return AccelReport("kvm", True, f"a boot-sector probe ran under KVM ({caveat})")
        return AccelReport("kvm", True, f"the kernel {kernel} booted under KVM")
    return AccelReport("tcg", False, f"/dev/kvm exists but a guest does not run under it ({why})")
