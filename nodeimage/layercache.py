"""The layer cache: the result of each provision layer, kept by the digest of everything that decides it.

    <cache>/layers/os-<key>.qcow2      the build VM's disk after the OS layer (packer's output)
    <cache>/layers/stack-<key>.tar     the image tree after the stack layer (tar with owners, modes,
                                       times, hard links, ACLs and xattrs)

A key is the SHA-256 of the layer's inputs and the previous layer's key, so a
change to a layer misses its entry and every later one, and nothing else.
Entries appear whole (written aside, renamed into place) and are used at most
once per build without being modified. The cache is bounded: after each
store the least recently used entries go until it fits NODEIMAGE_LAYER_CACHE_GIB
(default 20 GiB). `invoke clean --cache` empties it.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from nodeimage.fsutil import atomic_path
from nodeimage.log import debug, die, info
from nodeimage.run import run, which

DEFAULT_MAX_GIB = 20
MAX_ENV = "NODEIMAGE_LAYER_CACHE_GIB"
SUFFIX = {"os": ".qcow2", "stack": ".tar"}
TAR_FLAGS = ["--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner", "--sparse"]


def max_bytes() -> int:
    value = os.environ.get(MAX_ENV, str(DEFAULT_MAX_GIB))
    try:
        gib = float(value)
    except ValueError:
        die(f"{MAX_ENV} is not a number of GiB: {value!r}", hint=f"e.g. {MAX_ENV}=20 (0 turns the cache off)")
    if gib < 0:
        die(f"{MAX_ENV} cannot be negative: {value!r}", hint=f"e.g. {MAX_ENV}=20 (0 turns the cache off)")
    return int(gib * 2**30)


@dataclass(frozen=True)
class LayerCache:
    root: Path

    @classmethod
    def default(cls) -> LayerCache:
        from nodeimage.fetch import cache_dir

        return cls(cache_dir() / "layers")

    def path(self, layer: str, key: str) -> Path:
        return self.root / f"{layer}-{key}{SUFFIX[layer]}"

    def get(self, layer: str, key: str) -> Path | None:
        """The entry for ``layer`` at ``key``, marked as just used; None when there is none."""
        path = self.path(layer, key)
        if not path.is_file():
            debug(f"layer cache: no {path.name}")
            return None
        now = time.time()
        os.utime(path, (now, path.stat().st_mtime))  # atime = last use, for eviction
        info(f"layer {layer}: reusing {path} (its inputs are unchanged)")
        return path

    def put_file(self, layer: str, key: str, src: Path) -> Path:
        """Move ``src`` (a finished disk) into the cache; return the entry."""
        dest = self.path(layer, key)
        if max_bytes() == 0:
            return src
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest, mode=0o600) as part:
            shutil.move(src, part)
        self.prune(keep=dest)
        return dest

    def put_tree(self, layer: str, key: str, tree: Path) -> Path | None:
        """Store a tar of the root file tree ``tree``; return the entry (None when the cache is off)."""
        if max_bytes() == 0:
            return None
        dest = self.path(layer, key)
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest, mode=0o600) as part:
            run([which("tar", "tar"), "--create", "--file", part, *TAR_FLAGS, "-C", tree, "."], capture=True)
        self.prune(keep=dest)
        return dest

    @staticmethod
    def restore_tree(entry: Path, tree: Path) -> None:
        """Unpack a stored tree into the empty or absent directory ``tree``."""
        tree.mkdir(parents=True, exist_ok=True)
        if any(tree.iterdir()):
            die(f"cannot restore a layer into {tree}: it is not empty")
        run([which("tar", "tar"), "--extract", "--file", entry, *TAR_FLAGS, "--same-owner", "--same-permissions",
             "-C", tree], capture=True)  # fmt: skip

    def entries(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_file() and p.suffix in SUFFIX.values())

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.entries())

    def prune(self, keep: Path | None = None) -> list[Path]:
        """Remove the least recently used entries until the cache fits its limit; ``keep`` stays."""
        limit = max_bytes()
        entries = sorted(self.entries(), key=lambda p: p.stat().st_atime)
        total = sum(p.stat().st_size for p in entries)
        removed = []
        for path in entries:
            if total <= limit:
                break
            if keep is not None and path == keep:
                continue
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
            removed.append(path)
            info(f"layer cache over {limit / 2**30:.0f} GiB: removed the least recently used {path.name}")
        return removed

    def clear(self) -> int:
        """Remove every entry (and nothing else); return the bytes freed."""
        freed = 0
        for path in self.entries():
            freed += path.stat().st_size
            path.unlink(missing_ok=True)
        return freed
