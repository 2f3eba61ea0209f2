"""What `invoke clean` may delete: build outputs nodeimage made, never the user's files or a cluster's secrets.

An output root (``build/`` or ``--out DIR``) is nodeimage's only if nodeimage
created it: it then holds a marker file, :data:`MARKER`. Inside a marked root
clean removes exactly the things a build or `invoke base` leaves (build
directories with a build manifest or build state, ``.work-*`` directories of
builds that are no longer running, base images with their records) and
keeps everything else: cluster directories (CA keys, tokens: only `invoke
down --purge` removes them) and files it does not recognise.

The download, image, layer and probe caches are emptied by name (``sha256/``,
``sha512/``, ``partial/``, ``images/``, ``layers/``, ``probe/``), never by removing the cache directory,
so ``NODEIMAGE_CACHE`` pointing at a directory that holds other things is safe.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from nodeimage.fsutil import remove_work_dir
from nodeimage.log import die
from nodeimage.paths import REPO_ROOT
from nodeimage.procs import is_running

MARKER = ".nodeimage-output"
MARKER_TEXT = "This directory was created by nodeimage for build outputs; `invoke clean` may empty it.\n"
BUILD_FILES = ("build-manifest.json", ".nodeimage-build-state.json")
WORK_RE = re.compile(r"^\.work-(?P<profile>.+)-(?P<pid>\d+)$")
CACHE_PARTS = ("sha256", "sha512", "partial", "layers", "probe", "images")


def make_output_root(root: Path) -> None:
    """Create ``root`` (and mark it as nodeimage's) if it does not exist; an existing directory stays unmarked."""
    if root.exists():
        return
    root.mkdir(parents=True)
    (root / MARKER).write_text(MARKER_TEXT)


def _protected(root: Path) -> str | None:
    """Why ``root`` may never be cleaned, or None."""
    resolved = root.resolve()
    checkout = REPO_ROOT.resolve()
    if resolved == checkout:
        return "it is the nodeimage checkout"
    if resolved in checkout.parents:
        return "it holds the nodeimage checkout"
    if resolved == Path.home().resolve() or resolved == Path("/"):
        return "it is your home directory or the root directory"
    return None


@dataclass
class CleanReport:
    removed: list[Path] = field(default_factory=list)
    kept: list[tuple[Path, str]] = field(default_factory=list)


def _what(child: Path) -> str | None:
    """What nodeimage output ``child`` is, or None when it is not one."""
    if child.is_symlink():
        return None
    work = WORK_RE.match(child.name)
    if work and child.is_dir():
        return None if is_running(int(work["pid"])) else "the work directory of an interrupted build"
    if child.is_dir() and any((child / name).is_file() for name in BUILD_FILES):
        return "a build"
    if child.is_dir() and child.name == "base" and any(child.glob("*.qcow2")):
        return "base images"
    if child.is_file() and child.name.endswith(".build.lock") and child.name.startswith("."):
        return "a build lock"
    return None


def clean_outputs(root: Path, *, state_dir: Path | None = None) -> CleanReport:
    """Remove the build outputs under ``root``; keep and report everything else."""
    root = Path(root)
    reason = _protected(root)
    if reason:
        die(f"refusing to clean {root}: {reason}", hint="give the output root of your builds, e.g. --out build")
    report = CleanReport()
    if not root.exists():
        return report
    if not root.is_dir():
        die(f"refusing to clean {root}: it is not a directory", hint="give the output root of your builds")
    if not (root / MARKER).is_file():
        die(
            f"refusing to clean {root}: nodeimage did not create it (no {MARKER} in it)",
            hint="remove the builds you want by hand (each is a directory holding build-manifest.json), or, if "
            f"the whole directory is nodeimage's, `touch {root / MARKER}` and run clean again",
        )
    clusters = (state_dir or root / "clusters").resolve()
    for child in sorted(root.iterdir()):
        if child.name == MARKER:
            continue
        if child.name == "clusters" or child.resolve() == clusters or clusters.is_relative_to(child.resolve()):
            report.kept.append((child, "cluster secrets and state: `invoke down --purge --cluster NAME` removes them"))
            continue
        what = _what(child)
        if what is None:
            report.kept.append((child, "not a nodeimage output" if not WORK_RE.match(child.name)
                                else "the work directory of a build that is running"))  # fmt: skip
            continue
        if WORK_RE.match(child.name):
            remove_work_dir(child)
        elif child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
        report.removed.append(child)
    return report


def clean_cache(cache: Path) -> list[Path]:
    """Empty the download, layer and probe caches under ``cache``, by their names only."""
    removed = []
    for name in CACHE_PARTS:
        part = cache / name
        if part.is_symlink():
            part.unlink()
        elif part.is_dir():
            shutil.rmtree(part)
        else:
            continue
        removed.append(part)
    return removed
