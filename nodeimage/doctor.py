"""`invoke doctor`: what this machine will build with, before a long build finds out."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from nodeimage import accel, packer
from nodeimage.log import NodeimageError
from nodeimage.run import run

TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "xorriso": "xorriso",
    "mmdebstrap": "mmdebstrap",
    "grub-mkimage": "grub2-common",
    "mkfs.ext4": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "ssh": "openssh-client",
    "cloud-init": "cloud-init",
    "shellcheck": "shellcheck",
    "xmllint": "libxml2-utils",
}
MIN_FREE_GIB = 20


def _version(program: str) -> str:
    proc = run([program, "--version"], check=False, capture=True)
    text = (proc.stdout or proc.stderr).decode(errors="replace")
    match = re.search(r"\d+\.\d+(\.\d+)?", text)
    return match.group(0) if match else "unknown version"


def report(build_dir: Path = Path("build")) -> list[tuple[str, str, bool]]:
    """Rows of (what, finding, ok)."""
    rows: list[tuple[str, str, bool]] = []
    try:
        info_ = packer.find_packer()
        mode = "qemu plugin via `packer init`" if info_.needs_plugin else "qemu builder built in"
        rows.append(("packer", f"{info_.version_str} at {info_.path} ({mode})", True))
    except NodeimageError as exc:
        rows.append(("packer", exc.message, False))
    for program, package in TOOLS.items():
        path = shutil.which(program)
        if path:
            finding = _version(program) if program.startswith("qemu") else path
            rows.append((program, finding, True))
        else:
            rows.append((program, f"missing (Debian package {package}; `make deps` installs it)", False))
    target = build_dir if build_dir.exists() else Path.cwd()
    free_gib = shutil.disk_usage(target).free / 2**30
    rows.append(("free disk", f"{free_gib:.0f} GiB at {target.resolve()}", free_gib >= MIN_FREE_GIB))
    kvm = accel.probe(cache=False)
    rows.append(("KVM", "works (a guest ran under it)" if kvm.kvm_usable else f"not usable: {kvm.reason}", True))
    rows.append(("accelerator", f"builds will use {kvm.accelerator}", True))
    return rows


def render(rows: list[tuple[str, str, bool]]) -> str:
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{'ok ' if ok else 'BAD'} {what.ljust(width)}  {finding}" for what, finding, ok in rows)
