"""Download the lock's artifacts into the content-addressed cache (nodeimage.cache), verified.

The transfer itself (HTTP retries and resume, mirrors) is nodeimage.transfer;
here each artifact is found in the cache or fetched, and its size and digest
checked against the lock before it is stored. `invoke lock` (:func:`lock`)
is the one place that records digests in the lock: trust on first use,
a published checksum list, or a size. Everything read from a mirror is
verified exactly as if it came from upstream.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import requests

from nodeimage.cache import CACHE_ENV, _cached, _exclusive, cache_dir, cache_path, part_path
from nodeimage.fsutil import atomic_write
from nodeimage.lock import DEFAULT_LOCK, TOFU, LockEntry, load_lock, save_lock
from nodeimage.log import debug, die, info, step, warn
from nodeimage.transfer import (
    ATTEMPTS,
    LAYOUT_HINT,
    MIRROR_ENV,
    UNREACHABLE_HINT,
    FetchStats,
    _Context,
    _copy_local,
    _http_attempt,
    _is_url_mirror,
    _Progress,
    _published_checksum,
    _retrying,
    _size_mismatch,
    check_mirror,
    default_mirror,
    human,
    mirror_url,
    parse_checksums,
)

__all__ = [
    "ATTEMPTS", "CACHE_ENV", "LAYOUT_HINT", "MIRROR_ENV", "UNREACHABLE_HINT", "FetchResult", "FetchStats",
    "_Progress", "cache_dir", "cache_path", "check_mirror", "default_mirror", "fetch", "fetch_profile", "lock",
    "mirror_url", "parse_checksums", "part_path",
]  # fmt: skip


class FetchResult(dict[str, Path]):
    """Artifact name -> verified file in the cache, plus the :class:`FetchStats` of the run."""

    def __init__(self) -> None:
        super().__init__()
        self.stats = FetchStats()



def _record(ctx: _Context, entry: LockEntry, checksum: str, size: int | None) -> None:
    """Write a digest (and size) learned from a download into the lock file, atomically."""
    if ctx.lock_path is None:
        return
    lock = load_lock(ctx.lock_path)
    same = (entry.name, entry.version, entry.arch)
    current = next((e for e in lock.entries if (e.name, e.version, e.arch) == same), None)
    if current is None or current.url != entry.url:
        die(
            f"{ctx.lock_path} changed while {entry.label} was downloading; not recording its digest",
            hint="run the command again",
        )
    new = replace(current, checksum=checksum, size=current.size if size is None else size)
    if new != current:
        save_lock(lock.replace_entry(new), ctx.lock_path)
        ctx.stats.recorded.append(entry.name)



def _acquire(ctx: _Context, entry: LockEntry, *, refresh: bool = False) -> Path:
    """Return the verified cached file for ``entry``, downloading it if needed."""
    if entry.checksum_url and (entry.checksum is None or refresh):
        published = _published_checksum(ctx, entry)
        if entry.checksum is not None and published != entry.checksum:
            die(
                f"the published digest of {entry.label} changed: {entry.checksum_url} now says {published}, "
                f"the lock has {entry.checksum}",
                hint="find out why upstream changed it before updating the lock entry by hand",
            )
        if entry.checksum is None:
            info(f"{entry.label}: digest {published} read from {entry.checksum_url}")
            _record(ctx, entry, published, None)
            entry = replace(entry, checksum=published)

    if not refresh and (found := _cached(ctx.cache, entry)):
        debug(f"{entry.label}: in the cache as {found}")
        ctx.stats.files_reused += 1
        if entry.size is None and entry.checksum:
            _record(ctx, entry, entry.checksum, found.stat().st_size)
        return found
    if entry.checksum is None and ctx.lock_path is None:
        die(
            f"{entry.label} has no checksum in the lock and no lock file was given to record one in",
            hint="run `invoke lock` first",
        )

    algorithm = entry.algorithm or "sha256"
    part = part_path(ctx.cache, entry)
    with _exclusive(part.with_suffix(".lock"), entry.label):
        if not refresh and (found := _cached(ctx.cache, entry)):  # another process finished it meanwhile
            ctx.stats.files_reused += 1
            return found
        if refresh:
            part.unlink(missing_ok=True)
        src = ctx.source(entry.url)
        info(f"{entry.label}: downloading {src}")
        # a refreshed trust-on-first-use file may have changed size as well as digest
        expect = replace(entry, size=None) if refresh and entry.checksum_source == TOFU else entry
        if isinstance(src, Path):
            hasher = _copy_local(ctx, expect, src, part, algorithm)
        else:
            url = src
            hasher = _retrying(ctx, entry.label, url, lambda: _http_attempt(ctx, expect, url, part, algorithm))
        got = f"{algorithm}:{hasher.hexdigest()}"
        size = part.stat().st_size
        changed = entry.checksum is not None and got != entry.checksum
        if changed and not (refresh and entry.checksum_source == TOFU):
            part.unlink()
            where = f"the mirror's copy ({src})" if ctx.mirror else "upstream's file"
            die(
                f"checksum mismatch for {entry.name} {entry.version} ({entry.url}): "
                f"expected {entry.checksum}, got {got}",
                hint=f"{where} is not the file the lock pins; nothing was installed or cached. "
                "Replace a stale mirror copy; if upstream changed the file, find out why before touching the lock",
            )
        if not changed and entry.size is not None and size != entry.size:
            part.unlink()
            _size_mismatch(entry, size, "the download has")
        final = cache_path(ctx.cache, got)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, final)
        atomic_write(final.with_name(final.name + ".name"), entry.url + "\n")
    ctx.stats.files_downloaded += 1

    if entry.checksum is None or changed:
        what = "changed; the new digest was recorded" if changed else "was trusted on first use and recorded"
        warn(
            f"{entry.label}: no published digest; {got} ({size} bytes) {what} in {ctx.lock_path}. "
            f"Review it (e.g. compare with a download from another network) before committing the lock."
        )
        if ctx.mirror and _is_url_mirror(ctx.mirror) and ctx.mirror.startswith("http://"):
            warn(f"{entry.label}: that digest came over plain http from {ctx.mirror}")
        _record(ctx, entry, got, size)
    elif entry.size is None:
        _record(ctx, entry, got, size)
    return final



@contextlib.contextmanager
def _context(mirror: str | None, cache: Path | None, lock_path: Path | None) -> Iterator[_Context]:
    mirror = mirror or default_mirror()
    if mirror:
        check_mirror(mirror)
    with requests.Session() as session:
        session.headers["User-Agent"] = "nodeimage-fetch"
        yield _Context(
            cache=Path(cache) if cache else cache_dir(),
            mirror=mirror,
            lock_path=Path(lock_path) if lock_path else None,
            session=session,
            stats=FetchStats(),
        )



def _summary(stats: FetchStats) -> None:
    info(
        f"{stats.files_reused} from the cache, {stats.files_downloaded} downloaded "
        f"({human(stats.bytes_downloaded)}, {stats.bytes_downloaded} bytes)"
        + (f"; recorded in the lock: {', '.join(stats.recorded)}" if stats.recorded else "")
    )



def fetch(
    entries: Sequence[LockEntry],
    *,
    mirror: str | None = None,
    cache: Path | None = None,
    lock_path: Path | None = None,
) -> FetchResult:
    """Make every entry's file present and verified in the cache; return name -> path.

    Digests learned on the way (trust-on-first-use, checksum_url, sizes) are
    recorded in ``lock_path`` when it is given.
    """
    result = FetchResult()
    with _context(mirror, cache, lock_path) as ctx, step(f"fetch {len(entries)} artifacts into {ctx.cache}"):
        ctx.stats = result.stats
        for entry in entries:
            result[entry.name] = _acquire(ctx, entry)
        _summary(ctx.stats)
    return result



def fetch_profile(
    profile: str,
    *,
    lock_path: Path = DEFAULT_LOCK,
    mirror: str | None = None,
    cache: Path | None = None,
) -> FetchResult:
    """Fetch what a profile needs: its components (at the versions it expects) and its base image.

    An entry without a digest is refused (run `invoke lock`): fetching never changes the lock.
    """
    from nodeimage.profiles import load_profile

    p = load_profile(profile)
    wanted: dict[str, str | None] = dict(p.components)
    if p.base.source == "cloud-image" and p.base.artifact:
        wanted[p.base.artifact] = None
    entries = load_lock(lock_path).select(wanted, p.arch)
    return fetch(entries, mirror=mirror, cache=cache)  # only `invoke lock` writes the lock



def lock(
    lock_path: Path = DEFAULT_LOCK,
    *,
    names: list[str] | None = None,
    mirror: str | None = None,
    refresh: bool = False,
    cache: Path | None = None,
) -> FetchStats:
    """Fill in missing digests and sizes in the lock by downloading (every arch of) the named artifacts.

    With ``refresh`` every selected file is downloaded again and compared:
    a changed digest is an error, except for trust-on-first-use entries,
    whose new digest is recorded (with a warning to review it).
    """
    current = load_lock(lock_path)
    unknown = sorted(set(names or []) - set(current.names()))
    if unknown:
        die(f"{lock_path}: no artifact named {', '.join(unknown)}", hint=f"the lock has: {', '.join(current.names())}")
    selected = [e for e in current.entries if names is None or e.name in names]
    todo = selected if refresh else [e for e in selected if e.checksum is None or e.size is None]
    with _context(mirror, cache, lock_path) as ctx, step(f"lock {len(todo)} of {len(selected)} artifact files"):
        if not todo:
            info("every selected artifact already has a checksum and a size (use --refresh to re-check them)")
        for entry in todo:
            _acquire(ctx, entry, refresh=refresh)
        _summary(ctx.stats)
        return ctx.stats
