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

import hashlib
import json
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


def probe_key(kernel: Path | None, timeout: float) -> str:
    """What decides the probe's answer: this boot of the host, the qemu build, the kernel, /dev/kvm."""
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    qemu = Path(which("qemu-system-x86_64", "qemu-system-x86"))
    parts = [boot_id, f"{qemu.resolve()} {_stamp(qemu)}", f"{kernel} {_stamp(kernel) if kernel else ''}",
             str(os.stat("/dev/kvm").st_rdev), str(timeout)]  # fmt: skip
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _stamp(path: Path) -> str:
    st = path.resolve().stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def _cache_file(key: str) -> Path:
    from nodeimage.fetch import cache_dir

    return cache_dir() / "probe" / f"{key}.json"


def _cached(key: str | None) -> AccelReport | None:
    if key is None:
        return None
    try:
        data = json.loads(_cache_file(key).read_text())
        report = AccelReport(str(data["accelerator"]), bool(data["kvm_usable"]), str(data["reason"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return AccelReport(report.accelerator, report.kvm_usable, f"{report.reason} (probed earlier in this boot)")


def _store(key: str, report: AccelReport) -> None:
    from nodeimage.fsutil import atomic_write

    try:
        _cache_file(key).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(_cache_file(key), json.dumps(report.__dict__) + "\n")
    except OSError as exc:  # a read-only cache costs the next build 15 s, nothing else
        debug(f"cannot keep the probe's answer: {exc}")


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


def probe(kernel: Path | None = None, timeout: float = PROBE_TIMEOUT_S, *, cache: bool = True) -> AccelReport:
    """Boot a probe guest under KVM; report KVM only if it really ran.

    The answer is kept (see :func:`probe_key`) until the host reboots or
    qemu, the probe kernel or /dev/kvm change, so builds after the first
    do not pay the probe again; ``cache=False`` (`invoke doctor`) always boots.
    """
    kernel = kernel or find_probe_kernel()
    if os.environ.get("NODEIMAGE_ACCEL") in ("kvm", "tcg"):
        forced = os.environ["NODEIMAGE_ACCEL"]
        return AccelReport(forced, forced == "kvm", f"forced by NODEIMAGE_ACCEL={forced}")
    if not Path("/dev/kvm").exists():
        return AccelReport("tcg", False, "/dev/kvm does not exist")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return AccelReport("tcg", False, "/dev/kvm is not readable and writable by this user")
    key = probe_key(kernel, timeout) if cache else None
    cached = _cached(key)
    if cached is not None:
        return cached
    with tempfile.TemporaryDirectory(prefix="nodeimage-probe-") as tmp:
        ok, why = _boots("kvm", Path(tmp), kernel, timeout)
    report = _report(ok, why, kernel)
    if key is not None:
        _store(key, report)
    return report


def _report(ok: bool, why: str, kernel: Path | None) -> AccelReport:
    if ok:
        if kernel is None:
            caveat = "no kernel found to probe with: a kernel may still hang"
            return AccelReport("kvm", True, f"a boot-sector probe ran under KVM ({caveat})")
        return AccelReport("kvm", True, f"the kernel {kernel} booted under KVM")
    return AccelReport("tcg", False, f"/dev/kvm exists but a guest does not run under it ({why})")
