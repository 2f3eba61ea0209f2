"""Getting one file's bytes: HTTP with retries, resume and progress, or a copy out of a mirror directory.

Every byte is hashed while it arrives; nothing here decides whether the file
is the right one (that is the lock's digest, checked in nodeimage.fetch).
Mirrors: the upstream URL ``https://HOST/PATH`` is read from
``<mirror>/HOST/PATH``, where the mirror is a local directory (or
``file://`` URL) or an ``http(s)://`` base URL.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TypeVar
from urllib.parse import unquote, urlsplit

import requests
import urllib3.exceptions

from nodeimage.lock import ALGORITHMS, LockEntry
from nodeimage.log import die, info, warn

# Module constants so tests (and impatient users) can shorten them.
CONNECT_TIMEOUT = 5.0  # seconds to open a connection: unreachable hosts fail fast

READ_TIMEOUT = 30.0  # seconds without a byte before a stalled transfer is retried

ATTEMPTS = 4  # tries per file for transient failures (5xx, reset, read timeout)

BACKOFF = 1.0  # seconds before the first retry, doubled after each

CHUNK = 1 << 20

PROGRESS_SECONDS = 5.0

PROGRESS_STEPS_FROM = 8 << 20  # files this large also report every 10 %



MIRROR_ENV = "NODEIMAGE_MIRROR"

UNREACHABLE_HINT = (
    "upstream is unreachable from this machine; use --mirror DIR_OR_URL (or NODEIMAGE_MIRROR) "
    "with the layout <mirror>/<host>/<path>"
)

LAYOUT_HINT = "a mirror holds each file at <mirror>/<host>/<path> of its upstream URL"



T = TypeVar("T")



@dataclass
class FetchStats:
    """What a fetch did: a second fetch of the same lock reports 0 bytes downloaded."""

    bytes_downloaded: int = 0  # bytes received from the network or copied from a mirror directory
    files_downloaded: int = 0
    files_reused: int = 0
    recorded: list[str] = field(default_factory=list)  # entries whose digest or size was written to the lock



def default_mirror() -> str | None:
    return os.environ.get(MIRROR_ENV) or None



def _is_url_mirror(mirror: str) -> bool:
    return mirror.startswith(("http://", "https://"))



def mirror_url(url: str, mirror: str) -> str:
    """Map upstream ``https://HOST/PATH`` to ``<mirror>/HOST/PATH``.

    For an http(s) mirror the result is a URL (the path kept as encoded);
    for a directory (or file:// URL) it is a filesystem path with the URL
    path decoded.
    """
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    if _is_url_mirror(mirror):
        return f"{mirror.rstrip('/')}/{host}/{parts.path.lstrip('/')}"
    base = mirror.removeprefix("file://")
    return os.path.join(base, host, unquote(parts.path).lstrip("/"))



def check_mirror(mirror: str) -> None:
    if _is_url_mirror(mirror):
        if not urlsplit(mirror).hostname:
            die(f"invalid mirror URL: {mirror!r}", hint="give http(s)://HOST[/PREFIX] or a directory")
        return
    if "://" in mirror and not mirror.startswith("file://"):
        die(f"invalid mirror: {mirror!r}", hint="a mirror is a directory, a file:// URL or an http(s):// base URL")
    if not Path(mirror.removeprefix("file://")).is_dir():
        die(f"mirror directory does not exist: {mirror}", hint=LAYOUT_HINT)



def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # unreachable; keeps type checkers content



class _Progress:
    """A line every few seconds (and every 10 % of a large file), never one per chunk."""

    def __init__(self, label: str, total: int | None, already: int = 0) -> None:
        self.label = label
        self.total = total
        self.done = already
        self.started = time.monotonic()
        self.last = self.started
        self.moved = 0
        self.tenth = self._tenth()

    def _tenth(self) -> int:
        return self.done * 10 // self.total if self.total else 0

    def update(self, n: int) -> None:
        self.done += n
        self.moved += n
        now = time.monotonic()
        tenth = self._tenth()
        big = self.total is not None and self.total >= PROGRESS_STEPS_FROM
        if now - self.last >= PROGRESS_SECONDS or (big and tenth > self.tenth):
            self.last = now
            self.tenth = tenth
            rate = self.moved / max(now - self.started, 1e-6)
            of = f" / {human(self.total)} ({self.done * 100 // self.total} %)" if self.total else ""
            info(f"{self.label}: {human(self.done)}{of} at {human(rate)}/s")

    def finish(self) -> None:
        took = time.monotonic() - self.started
        info(f"{self.label}: {human(self.moved)} in {took:.1f}s ({human(self.moved / max(took, 1e-6))}/s)")



class _Retry(Exception):
    """A transient failure: the attempt may be repeated (and resumed)."""



class _Unreachable(Exception):
    """The host cannot be reached at all: retrying would only delay the error."""



def _errno_text(exc: BaseException) -> str:
    m = re.search(r"\[Errno -?\d+\] ([^)'\"]*)", str(exc))
    return m.group(1).strip() if m else str(exc)



def _classify(exc: requests.RequestException) -> Exception:
    """Turn a requests error into _Unreachable (DNS, refused, connect timeout) or _Retry."""
    if isinstance(exc, requests.ConnectTimeout):
        return _Unreachable(f"no connection within {CONNECT_TIMEOUT:g}s")
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(reason, urllib3.exceptions.NameResolutionError):
        return _Unreachable(f"host name does not resolve: {_errno_text(reason)}")
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return _Unreachable(_errno_text(reason))
    if isinstance(reason, urllib3.exceptions.ConnectTimeoutError):
        return _Unreachable(f"no connection within {CONNECT_TIMEOUT:g}s")
    if isinstance(exc, requests.exceptions.SSLError):
        return _Unreachable(f"TLS failed: {reason or exc}")
    return _Retry(f"{type(reason or exc).__name__}: {_errno_text(reason or exc)}")



@dataclass
class _Context:
    """The state of one fetch run, kept apart from the lock's data."""

    cache: Path
    mirror: str | None
    lock_path: Path | None
    session: requests.Session
    stats: FetchStats

    def source(self, url: str) -> str | Path:
        """Where ``url`` is read from: upstream, a mirror URL, or a file in a mirror directory."""
        if self.mirror is None:
            return url
        mapped = mirror_url(url, self.mirror)
        return mapped if _is_url_mirror(self.mirror) else Path(mapped)

    def unreachable(self, label: str, url: str, reason: str) -> NoReturn:
        if self.mirror is None:
            die(f"cannot download {label}: {url} is unreachable ({reason})", hint=UNREACHABLE_HINT)
        die(
            f"cannot download {label} from the mirror: {url} is unreachable ({reason})",
            hint=f"check that the mirror {self.mirror} is up and its address is right; {LAYOUT_HINT}",
        )

    def http_status(self, label: str, url: str, resp: requests.Response) -> NoReturn:
        where = "the mirror" if self.mirror else "upstream"
        hint = LAYOUT_HINT if self.mirror else "the file may have moved; serve a copy through --mirror"
        die(f"cannot download {label}: {where} answered HTTP {resp.status_code} {resp.reason} for {url}", hint=hint)



def _retrying(ctx: _Context, label: str, url: str, attempt: Callable[[], T]) -> T:
    """Run ``attempt`` until it succeeds, retrying transient failures with backoff."""
    delay = BACKOFF
    for n in range(1, ATTEMPTS + 1):
        try:
            return attempt()
        except _Unreachable as exc:
            ctx.unreachable(label, url, str(exc))
        except _Retry as exc:
            if n == ATTEMPTS:
                die(
                    f"cannot download {label} from {url}: {exc} (gave up after {ATTEMPTS} attempts)",
                    hint="run the same command again to resume the partial download",
                )
            warn(f"{label}: {exc}; retrying in {delay:g}s (attempt {n + 1} of {ATTEMPTS})")
            time.sleep(delay)
            delay *= 2
    raise AssertionError("not reached")



def _get(ctx: _Context, label: str, url: str, headers: dict[str, str]) -> requests.Response:
    # identity: the digest is of the bytes as published, never of a re-encoded stream
    try:
        resp = ctx.session.get(
            url,
            headers={"Accept-Encoding": "identity", **headers},
            stream=True,
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
        )
    except requests.RequestException as exc:
        raise _classify(exc) from exc
    if resp.status_code >= 500 or resp.status_code == 429:
        resp.close()
        raise _Retry(f"HTTP {resp.status_code} {resp.reason}")
    return resp



def _hash_file(path: Path, algorithm: str) -> hashlib._Hash:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h



def _content_range(resp: requests.Response) -> tuple[int, int | None]:
    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
    if not m:
        raise _Retry(f"unparsable Content-Range {resp.headers.get('Content-Range')!r}")
    return int(m.group(1)), None if m.group(2) == "*" else int(m.group(2))



def _size_mismatch(entry: LockEntry, got: int, where: str) -> None:
    die(
        f"size mismatch for {entry.label} ({entry.url}): the lock says {entry.size} bytes, {where} {got}",
        hint="the file is not the one the lock pins (a stale mirror copy, or upstream replaced it)",
    )



def _http_attempt(ctx: _Context, entry: LockEntry, url: str, part: Path, algorithm: str) -> hashlib._Hash:
    """One try at completing ``part`` from ``url``, resuming what it already holds."""
    have = part.stat().st_size if part.exists() else 0
    if entry.size is not None and have > entry.size:
        part.unlink()
        have = 0
    resp = _get(ctx, entry.label, url, {"Range": f"bytes={have}-"} if have else {})
    with resp:
        if resp.status_code == 416 and have:
            m = re.search(r"/(\d+)$", resp.headers.get("Content-Range", ""))
            if m and int(m.group(1)) == have:  # the part was already complete
                return _hash_file(part, algorithm)
            part.unlink()
            raise _Retry("the server refused to resume; starting over")
        if resp.status_code not in (200, 206):
            ctx.http_status(entry.label, url, resp)
        if resp.status_code == 206:
            start, total = _content_range(resp)
            if start != have:
                part.unlink()
                raise _Retry(f"asked to resume at byte {have}, the server answered from byte {start}")
            if have:
                info(f"{entry.label}: resuming at {human(have)}")
        else:
            if have:
                info(f"{entry.label}: the server ignored the resume request; downloading from the start")
            have = 0
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if entry.size is not None and total is not None and total != entry.size:
            part.unlink(missing_ok=True)
            _size_mismatch(entry, total, "the server offers")
        hasher = _hash_file(part, algorithm) if have else hashlib.new(algorithm)
        progress = _Progress(entry.label, total, have)
        with open(part, "ab" if have else "wb") as fh:
            try:
                # read1: whatever has arrived, so bytes before a stall are kept for the resume
                while chunk := resp.raw.read1(CHUNK, decode_content=False):
                    fh.write(chunk)
                    hasher.update(chunk)
                    ctx.stats.bytes_downloaded += len(chunk)
                    progress.update(len(chunk))
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                fh.flush()
                raise _Retry(f"transfer broke off at {human(progress.done)}: {type(exc).__name__}") from exc
        if total is not None and progress.done != total:
            raise _Retry(f"the connection closed after {progress.done} of {total} bytes")
        progress.finish()
        return hasher



def _copy_local(ctx: _Context, entry: LockEntry, src: Path, part: Path, algorithm: str) -> hashlib._Hash:
    """Copy a file out of a mirror directory, hashing while copying."""
    if not src.is_file():
        die(f"{entry.label} is not in the mirror: {src} does not exist", hint=f"{LAYOUT_HINT}; copy {entry.url} there")
    size = src.stat().st_size
    if entry.size is not None and size != entry.size:
        _size_mismatch(entry, size, f"the mirror's {src} has")
    hasher = hashlib.new(algorithm)
    progress = _Progress(entry.label, size)
    with open(src, "rb") as fi, open(part, "wb") as fo:
        while chunk := fi.read(CHUNK):
            fo.write(chunk)
            hasher.update(chunk)
            ctx.stats.bytes_downloaded += len(chunk)
            progress.update(len(chunk))
    progress.finish()
    return hasher



def parse_checksums(text: str, filename: str) -> str | None:
    """The digest for ``filename`` in a SHA256SUMS-style list ("<hex>  <name>" or "<hex> *<name>"), or in a
    file beside it that holds the bare digest (dl.k8s.io's ``<binary>.sha256``, cri-tools' ``.sha256``)."""
    bare = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}|[0-9a-fA-F]{128}", bare):
        algorithm = next(a for a, n in ALGORITHMS.items() if n == len(bare))
        return f"{algorithm}:{bare.lower()}"
    found = set()
    for line in text.splitlines():
        m = re.match(r"^([0-9a-fA-F]{64}|[0-9a-fA-F]{128}) [ *](?:\./)?(.+?)\s*$", line)
        if m and m.group(2) == filename:
            hexdigest = m.group(1).lower()
            algorithm = next(a for a, n in ALGORITHMS.items() if n == len(hexdigest))
            found.add(f"{algorithm}:{hexdigest}")
    if len(found) > 1:
        die(f"the checksum list names {filename} with different digests: {', '.join(sorted(found))}")
    return found.pop() if found else None



def _published_checksum(ctx: _Context, entry: LockEntry) -> str:
    """Read the entry's digest from its checksum_url (through the mirror, if any)."""
    assert entry.checksum_url is not None
    src = ctx.source(entry.checksum_url)
    if isinstance(src, Path):
        if not src.is_file():
            die(f"the checksum list for {entry.label} is not in the mirror: {src} does not exist", hint=LAYOUT_HINT)
        text = src.read_text(errors="replace")
    else:
        url = src

        def attempt() -> str:
            resp = _get(ctx, entry.label, url, {})
            with resp:
                if resp.status_code != 200:
                    ctx.http_status(f"the checksum list for {entry.label}", url, resp)
                try:
                    return resp.content.decode(errors="replace")
                except requests.RequestException as exc:
                    raise _Retry(f"transfer broke off: {type(exc).__name__}") from exc

        text = _retrying(ctx, f"checksum list for {entry.label}", url, attempt)
    checksum = parse_checksums(text, entry.filename)
    if checksum is None:
        die(
            f"{entry.checksum_url} has no line for {entry.filename} ({entry.label})",
            hint="check the url and checksum_url of this entry in the lock file",
        )
    return checksum
