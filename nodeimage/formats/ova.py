"""ova: an OVF 1.x package of the image (vSphere, VirtualBox), on request (--formats qcow2,ova).

The writer is nodeimage.ova (streamOptimized VMDK with a content-derived CID,
fixed tar headers); this unit gives it the profile's name, shape, product
data and guest OS, checks the package's .mf against its members, and
compares two builds' packages member by member.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nodeimage.formats import Format, Recorded, register

if TYPE_CHECKING:
    from nodeimage.config import BuildConfig
    from nodeimage.repro import ReproReport


class Ova(Format):
    name = "ova"
    filename = "node.ova"
    description = "OVF package: descriptor, .mf and a streamOptimized VMDK"

    def write(self, config: BuildConfig, written: dict[str, Path], out: Path) -> None:
        from nodeimage.ova import write_profile_ova

        write_profile_ova(written["qcow2"], out, config.profile, epoch=config.epoch)

    def check(self, path: Path, outputs: Sequence[Recorded], build_dir: Path) -> list[str]:
        from nodeimage.ova import check_ova

        return check_ova(path)

    def compare(self, report: ReproReport, rec: Recorded, a: Path, b: Path, scratch: Path) -> None:
        from nodeimage.repro import compare_ovas

        compare_ovas(report, rec, a, b, scratch)


OVA = register(Ova())
