"""Output formats, one module each: how an output is written, verified and compared.

The qcow2 is the image; every other output is made from it (the SBOM, an
OVA, a containerDisk). A format says its file name, whether every build
writes it, how to write it from the finished qcow2, what `invoke verify`
checks inside it beyond its recorded size and digest, and how `invoke repro`
explains a difference between two builds' copies. build, verify and repro
iterate this registry: a new format is one module here and its tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nodeimage.log import die
from nodeimage.registry import Registry

if TYPE_CHECKING:
    from nodeimage.config import BuildConfig
    from nodeimage.repro import ReproReport


@dataclass(frozen=True)
class Recorded:
    """One output as build-manifest.json records it."""

    path: str  # relative to the build directory
    sha256: str
    size: int
    format: str


class Format:
    """An output format. ``always`` formats are written by every build; the others on request."""

    name: str = ""
    filename: str = ""
    always: bool = False
    description: str = ""
    # Written after these formats' outputs exist (their paths are in ``written``).
    after: tuple[str, ...] = ("qcow2",)

    def write(self, config: BuildConfig, written: dict[str, Path], out: Path) -> None:
        """Write this format's output to ``out`` (nothing at ``out`` unless it succeeds)."""
        raise NotImplementedError

    def check(self, path: Path, outputs: Sequence[Recorded], build_dir: Path) -> list[str]:
        """Problems inside an intact output (its size and digest already matched); [] when none."""
        return []

    def compare(self, report: ReproReport, rec: Recorded, a: Path, b: Path, scratch: Path) -> None:
        """Explain why two builds' copies of this output differ (notes and details in ``report``)."""
        from nodeimage.repro import diffoscope

        text = diffoscope(a, b)
        if text:
            report.detail[rec.path] = text.strip()


_UNITS: Registry[Format] = Registry("output format", __name__, __path__)
register = _UNITS.register


def all_formats() -> list[Format]:
    """Every format, in the order a build writes them (each after the ones it needs)."""
    ordered: list[Format] = []
    pending = sorted(_UNITS.load().values(), key=lambda f: (not f.always, f.name))
    while pending:
        ready = [f for f in pending if all(a in {o.name for o in ordered} for a in f.after if a != f.name)]
        if not ready:
            raise ValueError(f"formats with unmet 'after': {[f.name for f in pending]}")
        ordered.append(ready[0])
        pending.remove(ready[0])
    return ordered


def selectable() -> list[str]:
    """Format names a profile or --formats may name (the always-written ones included)."""
    return [f.name for f in all_formats() if f.name != "spdx-json"]


def get(name: str) -> Format:
    """The format ``name``; die listing the ones a profile may name."""
    return _UNITS.get(name, known=selectable())


def resolve(names: Sequence[str]) -> tuple[Format, ...]:
    """The formats to write for ``names``: the always-written ones plus those named, in build order."""
    known = selectable()
    bad = [n for n in names if n not in known]
    if bad:
        die(f"unknown output format {', '.join(map(repr, bad))}", hint=f"choose from {', '.join(known)}")
    return tuple(f for f in all_formats() if f.always or f.name in names)


def parse_option(value: str) -> tuple[str, ...]:
    """Parse a --formats option such as 'qcow2,ova'; die naming what is wrong."""
    items = tuple(f.strip() for f in value.split(",") if f.strip())
    known = selectable()
    bad = [f for f in items if f not in known]
    if not items or bad:
        die(f"invalid --formats value: {value!r}", hint="a comma-separated list drawn from " + ", ".join(known))
    return items
