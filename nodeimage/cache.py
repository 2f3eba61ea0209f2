"""The download cache: content-addressed, verified files, and the partial downloads waiting to resume.

Layout (``$NODEIMAGE_CACHE``, else ``$XDG_CACHE_HOME/nodeimage``, else ``~/.cache/nodeimage``)::

    <cache>/<algorithm>/<hex>        a verified file, named by its digest
    <cache>/<algorithm>/<hex>.name   the URL it was locked under (for people)
    <cache>/partial/<name>-<arch>-<urlhash>.part   a download in progress

A file appears under its digest only after its size and digest were checked,
so a Ctrl-C leaves at most a ``.part``, which the next run resumes.
The same directory holds the image staging (``images/``), the layer cache
(``layers/``) and the accelerator probe's answers (``probe/``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from nodeimage.fsutil import held_exclusively
from nodeimage.lock import LockEntry
from nodeimage.log import info, warn
from nodeimage.transfer import _hash_file

CACHE_ENV = "NODEIMAGE_CACHE"

def cache_dir() -> Path:
    """The download cache: $NODEIMAGE_CACHE, else $XDG_CACHE_HOME/nodeimage, else ~/.cache/nodeimage."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "nodeimage"



def cache_path(cache: Path, checksum: str) -> Path:
    """Where the file with digest ``checksum`` ("sha256:<hex>") lives in the cache."""
    algorithm, hexdigest = checksum.split(":", 1)
    return cache / algorithm / hexdigest



def part_path(cache: Path, entry: LockEntry) -> Path:
    """Where an unfinished download of ``entry`` waits to be resumed."""
    # keyed by URL too, so a version bump never resumes the old version's bytes
    urlhash = hashlib.sha256(entry.url.encode()).hexdigest()[:12]
    return cache / "partial" / f"{entry.name}-{entry.arch}-{urlhash}.part"



def _exclusive(path: Path, label: str) -> contextlib.AbstractContextManager[None]:
    """Serialise downloads of one file between nodeimage processes sharing a cache."""
    return held_exclusively(path, lambda: info(f"{label}: another nodeimage process is downloading it; waiting"))



def _cached(cache: Path, entry: LockEntry) -> Path | None:
    """The cached file for ``entry`` if it is there and still has the locked digest."""
    if entry.checksum is None:
        return None
    final = cache_path(cache, entry.checksum)
    if not final.is_file():
        return None
    algorithm, digest = entry.checksum.split(":", 1)
    if (entry.size is not None and final.stat().st_size != entry.size) or _hash_file(
        final, algorithm
    ).hexdigest() != digest:
        warn(f"{entry.label}: the cached copy {final} is damaged; downloading it again")
        final.unlink()
        return None
    return final
