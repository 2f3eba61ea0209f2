"""qcow2: the image itself (qemu/KVM, OpenStack, Proxmox, Metal3), written by every build.

The build's normalise step makes it; this unit only checks and compares it:
`invoke verify` runs ``qemu-img check`` on it, and `invoke repro` tells a
container-only difference from a content one and lists differing files.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nodeimage.formats import Format, Recorded, register
from nodeimage.run import run

if TYPE_CHECKING:
    from nodeimage.config import BuildConfig
    from nodeimage.repro import ReproReport


class Qcow2(Format):
    name = "qcow2"
    filename = "node.qcow2"
    always = True
    description = "the image (qcow2, no backing file)"
    after = ()

    def write(self, config: BuildConfig, written: dict[str, Path], out: Path) -> None:
        raise AssertionError("the qcow2 is written by the build's normalise step")

    def check(self, path: Path, outputs: Sequence[Recorded], build_dir: Path) -> list[str]:
        if shutil.which("qemu-img") is None:
            return []
        proc = run(["qemu-img", "check", "-q", "-f", "qcow2", path], check=False, capture=True)
        if proc.returncode != 0:
            err = (proc.stdout + proc.stderr).decode(errors="replace").strip()
            return [f"{path}: qemu-img check found problems (exit {proc.returncode}): {err[-500:]}"]
        return []

    def compare(self, report: ReproReport, rec: Recorded, a: Path, b: Path, scratch: Path) -> None:
        from nodeimage.repro import compare_disks

        compare_disks(report, rec, a, b, scratch)


QCOW2 = register(Qcow2())
