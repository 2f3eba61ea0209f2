"""spdx-json: the SBOM of every build (SPDX 2.3): the image's distro packages, lock artifacts and baked images."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nodeimage.formats import Format, Recorded, register

if TYPE_CHECKING:
    from nodeimage.config import BuildConfig


class Spdx(Format):
    name = "spdx-json"
    filename = "node.spdx.json"
    always = True
    description = "the SBOM (SPDX 2.3 JSON)"

    def write(self, config: BuildConfig, written: dict[str, Path], out: Path) -> None:
        from nodeimage.sbom import write_build_sbom

        write_build_sbom(written["qcow2"], config, out)

    def check(self, path: Path, outputs: Sequence[Recorded], build_dir: Path) -> list[str]:
        """It must describe one of the build's qcow2 outputs by that output's recorded sha256."""
        try:
            doc = json.loads(path.read_text())
            described = set(doc["documentDescribes"])
            sums = {
                c["checksumValue"]
                for p in doc["packages"]
                if p["SPDXID"] in described
                for c in p.get("checksums", [])
                if c["algorithm"] == "SHA256"
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return [f"{path}: not a readable SPDX JSON document: {exc}"]
        images = {o.sha256 for o in outputs if o.format == "qcow2"}
        if not sums & images:
            return [f"{path}: describes an image with sha256 {sorted(sums)}, but the build's qcow2 is {sorted(images)}"]
        return []


SPDX = register(Spdx())
