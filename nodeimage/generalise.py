"""Generalisation: what makes a built tree an image that many machines can boot.

One list says what (``provision/files/generalise.list``, plus each
distribution's own entries); this module applies it to a root file tree. The
build applies it after the last provision layer, with the build VM powered
off, so nothing the VM writes while shutting down survives; ``invoke base``
applies the same list to the trees it bootstraps.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nodeimage.log import debug, die
from nodeimage.paths import PROVISION_FILES

LIST_FILE = PROVISION_FILES / "generalise.list"
SOURCES_DIR = PROVISION_FILES / "generalise"
ACTIONS = {"remove": 1, "clear": 1, "truncate": 1, "empty": 1, "reset": 2, "link": 2}


@dataclass(frozen=True)
class Rule:
    """One line of the list: an action, a path (or glob) relative to the root, and its argument."""

    action: str
    path: str
    arg: str | None = None

    def line(self) -> str:
        return " ".join(p for p in (f"{self.action:<8}", self.path, self.arg) if p)


def parse(text: str, source: str = str(LIST_FILE)) -> list[Rule]:
    """Parse a generalisation list; a malformed line is an error naming the file and the line."""
    rules = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        action, *args = line.split()
        if action not in ACTIONS or len(args) != ACTIONS[action]:
            die(f"{source}:{n}: cannot read {raw.strip()!r}", hint=f"actions: {', '.join(ACTIONS)}")
        path = PurePosixPath(args[0])
        if path.is_absolute() or ".." in path.parts:
            die(f"{source}:{n}: {args[0]!r} must be a path relative to the image's root, without '..'")
        rules.append(Rule(action, args[0], args[1] if len(args) > 1 else None))
    return rules


def rules_for(extra_remove: Sequence[str] = (), extra_truncate: Sequence[str] = ()) -> list[Rule]:
    """The common list plus a distribution's additions."""
    rules = parse(LIST_FILE.read_text())
    rules += [Rule("remove", p) for p in extra_remove]
    rules += [Rule("truncate", p) for p in extra_truncate]
    return rules


def render(rules: Iterable[Rule]) -> str:
    return "".join(r.line() + "\n" for r in rules)


def _inside(root: Path, path: Path) -> bool:
    """True when ``path`` (not followed if a symlink) lies below ``root``."""
    parent = Path(os.path.realpath(path.parent))
    return parent == root or root in parent.parents


def _matches(root: Path, pattern: str) -> list[Path]:
    found = glob.glob(glob.escape(str(root)) + "/" + pattern, recursive=True, include_hidden=True)
    return sorted((Path(p) for p in found if _inside(root, Path(p))), reverse=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def apply(tree: Path, rules: Iterable[Rule]) -> list[str]:
    """Apply ``rules`` to the root file tree ``tree``; return what changed, as relative paths."""
    root = Path(os.path.realpath(tree))
    if not root.is_dir():
        die(f"cannot generalise {tree}: not a directory")
    changed: list[str] = []
    for rule in rules:
        target = root / rule.path
        if rule.action == "remove":
            for path in _matches(root, rule.path):
                _remove(path)
                changed.append(str(path.relative_to(root)))
        elif rule.action == "clear":
            if target.is_dir() and not target.is_symlink() and _inside(root, target):
                for child in sorted(target.iterdir()):
                    _remove(child)
                    changed.append(str(child.relative_to(root)))
        elif rule.action in ("truncate", "empty"):
            files = [target] if rule.action == "truncate" else _files_below(target)
            for path in files:
                if path.is_file() and not path.is_symlink() and _inside(root, path) and path.stat().st_size:
                    with path.open("r+b") as fh:
                        fh.truncate(0)
                    changed.append(str(path.relative_to(root)))
        elif rule.action == "reset":
            assert rule.arg is not None
            source = SOURCES_DIR / rule.arg
            data = source.read_bytes()
            if not _inside(root, target):
                continue
            if target.is_symlink() or not target.is_file() or target.read_bytes() != data:
                target.unlink(missing_ok=True)
                target.write_bytes(data)
                target.chmod(0o644)
                changed.append(rule.path)
        elif rule.action == "link":
            assert rule.arg is not None
            if target.parent.is_dir() and _inside(root, target) and not (
                target.is_symlink() and os.readlink(target) == rule.arg
            ):
                _remove(target)
                target.symlink_to(rule.arg)
                changed.append(rule.path)
    debug(f"generalised {tree}: {', '.join(changed) or 'nothing to change'}")
    return changed


def _files_below(directory: Path) -> list[Path]:
    if not directory.is_dir() or directory.is_symlink():
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        out += [Path(dirpath) / f for f in sorted(filenames)]
    return out
