"""The lock file: every downloaded input of a build, pinned by URL and digest.

``artifacts.lock.yaml`` is parsed into the frozen dataclasses of
:mod:`nodeimage.lockmodel` and validated strictly, so a typo is one error
naming the file, the artifact, the key and the value before anything is
downloaded. :func:`save_lock` writes it back atomically in the same layout
(header comment, key order, quoting), so a recorded digest shows up as a
one-line diff that is easy to review.

This module is the lock's public interface: the model's names are
re-exported here, where callers import them.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from nodeimage.fsutil import atomic_write
from nodeimage.lockmodel import ALGORITHMS, CHECKSUM_SOURCES, TOFU, ImageEntry, Lock, LockEntry
from nodeimage.log import die
from nodeimage.paths import DEFAULT_LOCK
from nodeimage.refs import IMAGE_REF_RE
from nodeimage.userpaths import read_user_file

__all__ = [
    "ALGORITHMS",
    "CHECKSUM_SOURCES",
    "DEFAULT_HEADER",
    "DEFAULT_LOCK",
    "LOCK_VERSION",
    "TOFU",
    "ImageEntry",
    "Lock",
    "LockEntry",
    "dump_lock",
    "load_lock",
    "lock_sha256",
    "read_header",
    "save_lock",
]

LOCK_VERSION = 1
CHECKSUM_RE = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
ARCH_RE = re.compile(r"^[a-z0-9_]{1,16}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
PLATFORM_RE = re.compile(r"^[a-z0-9]+/[a-z0-9]+(/v[0-9])?$")


ARTIFACT_KEYS = ("version", "description", "arches")
ENTRY_KEYS = ("url", "checksum", "checksum_source", "checksum_url", "checksum_note", "size")

DEFAULT_HEADER = """\
# Every downloaded input of a nodeimage build, pinned.
#
# artifacts.<name>.arches.<arch> (arch "all" = the same file for every arch):
#   url              https:// only; a mirror serves it at <mirror>/<host>/<path>
#   checksum         sha256:<64 hex> or sha512:<128 hex>; null = not recorded yet
#   checksum_source  where that digest comes from:
#     upstream           published by the project that ships the artifact
#     third-party        published by another project (e.g. kubespray), not upstream
#     trust-on-first-use no published digest is known: `invoke lock` (or the
#                        first `invoke fetch`) downloads the file once and records
#                        its digest and size here; review that commit.
#   checksum_url     optional: a published digest list (SHA256SUMS style) that
#                    `invoke lock` reads the digest from
#   checksum_note    free text: where the digest was published
#   size             bytes; null = not recorded yet (`invoke lock` fills it in)
# A build refuses to install anything whose digest it cannot compare.
"""


class _Checker:
    """Validation of one lock file: every error names the file, the place, the key and the value."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, key: str, value: Any, expected: str) -> None:
        place = f"{where}: " if where else ""
        die(f"{self.path}: {place}invalid {key}: {value!r}", hint=f"expected {expected}")

    def mapping(self, where: str, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, key, value, "a mapping")
        return value

    def keys(self, where: str, data: dict[str, Any], allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
        for k in data:
            if k not in allowed:
                die(f"{self.path}: {where}: unknown key {k!r}", hint=f"allowed keys here: {', '.join(allowed)}")
        for k in required:
            if k not in data:
                die(f"{self.path}: {where}: missing required key {k!r}")

    def url(self, where: str, key: str, value: Any) -> str:
        # https only: a lock is a trust record, and trust-on-first-use digests
        # or a SHA256SUMS read over plain http could be forged in transit.
        # Mirrors may still be http(s) or a directory (see nodeimage.fetch).
        if not isinstance(value, str):
            self.fail(where, key, value, "an https:// URL")
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            self.fail(where, key, value, "an https:// URL (plain http and other schemes are refused)")
        if parts.query or parts.fragment or parts.username or parts.password:
            self.fail(where, key, value, "an https:// URL without query, fragment or credentials")
        segments = unquote(parts.path).split("/")
        if ".." in segments or "." in segments or not segments[-1]:
            self.fail(where, key, value, "an https:// URL whose path names a file (no '.' or '..' segments)")
        return value

    def entry(self, name: str, version: str, description: str | None, arch: Any, data: Any) -> LockEntry:
        where = f"artifacts.{name}.arches.{arch}"
        if not isinstance(arch, str) or not ARCH_RE.match(arch):
            self.fail(f"artifacts.{name}.arches", "arch", arch, "an arch name such as amd64, arm64 or all")
        data = self.mapping(where, "entry", data)
        self.keys(where, data, ENTRY_KEYS, ("url", "checksum", "checksum_source"))
        url = self.url(where, "url", data["url"])
        source = data["checksum_source"]
        if source not in CHECKSUM_SOURCES:
            self.fail(where, "checksum_source", source, "one of " + ", ".join(CHECKSUM_SOURCES))
        checksum = data["checksum"]
        if checksum is not None and (not isinstance(checksum, str) or not CHECKSUM_RE.match(checksum)):
            self.fail(where, "checksum", checksum, "sha256:<64 lower-case hex> or sha512:<128 lower-case hex>, or null")
        checksum_url = data.get("checksum_url")
        if checksum_url is not None:
            self.url(where, "checksum_url", checksum_url)
        if checksum is None and source != TOFU and checksum_url is None:
            die(
                f"{self.path}: {where}: checksum is null but checksum_source is {source!r}",
                hint="write down the published digest, give a checksum_url to read it from, "
                f"or say checksum_source: {TOFU}",
            )
        size = data.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            self.fail(where, "size", size, "a byte count (an integer >= 0) or null")
        note = data.get("checksum_note")
        if note is not None and not isinstance(note, str):
            self.fail(where, "checksum_note", note, "a string")
        return LockEntry(
            name=name,
            version=version,
            arch=arch,
            url=url,
            checksum=checksum,
            checksum_source=source,
            checksum_note=note,
            checksum_url=checksum_url,
            size=size,
            description=description,
        )

    def artifact(self, name: Any, data: Any) -> list[LockEntry]:
        if not isinstance(name, str) or not NAME_RE.match(name):
            self.fail("artifacts", "artifact name", name, "lower-case letters, digits, '.', '_' and '-'")
        where = f"artifacts.{name}"
        data = self.mapping("artifacts", name, data)
        self.keys(where, data, ARTIFACT_KEYS, ("version", "arches"))
        version = data["version"]
        if not isinstance(version, str) or not version.strip():
            self.fail(where, "version", version, 'a string (quote numbers: version: "20.04")')
        description = data.get("description")
        if description is not None and not isinstance(description, str):
            self.fail(where, "description", description, "a string")
        arches = self.mapping(where, "arches", data["arches"])
        if not arches:
            self.fail(where, "arches", arches, "at least one arch entry")
        if "all" in arches and len(arches) > 1:
            self.fail(where, "arches", list(arches), "either 'all' alone or per-arch entries, not both")
        return [self.entry(name, version, description, arch, entry) for arch, entry in arches.items()]

    def image(self, ref: Any, data: Any) -> list[ImageEntry]:
        if not isinstance(ref, str) or not IMAGE_REF_RE.match(ref):
            self.fail("images", "image reference", ref, "registry/repository:tag, e.g. registry.k8s.io/pause:3.1")
        where = f"images.{ref}"
        data = self.mapping("images", ref, data)
        self.keys(where, data, ("platforms", "note"), ("platforms",))
        platforms = self.mapping(where, "platforms", data["platforms"])
        out = []
        for platform, entry in platforms.items():
            here = f"{where}.platforms.{platform}"
            if not isinstance(platform, str) or not PLATFORM_RE.match(platform):
                self.fail(f"{where}.platforms", "platform", platform, "os/arch, e.g. linux/amd64")
            entry = self.mapping(here, "entry", entry)
            self.keys(here, entry, ("digest", "digest_source", "size"), ("digest", "digest_source"))
            digest, source, size = entry["digest"], entry["digest_source"], entry.get("size")
            if digest is not None and (not isinstance(digest, str) or not DIGEST_RE.match(digest)):
                self.fail(here, "digest", digest, "sha256:<64 lower-case hex> (the platform manifest's digest) or null")
            if source not in CHECKSUM_SOURCES:
                self.fail(here, "digest_source", source, "one of " + ", ".join(CHECKSUM_SOURCES))
            if digest is None and source != TOFU:
                self.fail(here, "digest", digest, f"a digest (null only with digest_source: {TOFU})")
            if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
                self.fail(here, "size", size, "a byte count or null")
            out.append(ImageEntry(ref, platform, digest, source, size, data.get("note")))
        return out

    def lock(self, data: Any) -> Lock:
        data = self.mapping("", "top level", data)
        self.keys("top level", data, ("lock_version", "artifacts", "images"), ("lock_version", "artifacts"))
        if data["lock_version"] != LOCK_VERSION:
            expected = f"{LOCK_VERSION} (the only version this nodeimage reads)"
            self.fail("", "lock_version", data["lock_version"], expected)
        artifacts = self.mapping("", "artifacts", data["artifacts"])
        entries = []
        for name, art in artifacts.items():
            versions = art if isinstance(art, list) else [art]  # several versions: a list of them
            for one in versions:
                entries += self.artifact(name, one)
        seen = [(e.name, e.version, e.arch) for e in entries]
        if len(seen) != len(set(seen)):
            dup = next(k for k in seen if seen.count(k) > 1)
            die(f"{self.path}: artifacts.{dup[0]} lists version {dup[1]} ({dup[2]}) twice")
        images = self.mapping("", "images", data.get("images") or {})
        image_entries = [i for ref, img in images.items() for i in self.image(ref, img)]
        return Lock(path=self.path, entries=tuple(entries), images=tuple(image_entries))


LOCK_FILE_LIMIT = 16 * 1024 * 1024  # a lock is text of a few KiB per entry; more is not a lock file


def load_lock(path: Path = DEFAULT_LOCK) -> Lock:
    """Read and validate a lock file; any problem is one error naming file, key and value."""
    path = Path(path)
    text = read_user_file(
        path,
        what="the lock file",
        option="--lock-file",
        hint="give its path with --lock-file (default artifacts.lock.yaml)",
        limit=LOCK_FILE_LIMIT,
    )
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        die(f"{path}: not valid YAML: {exc}")
    return _Checker(path).lock(data)


def read_header(path: Path) -> str:
    """The comment block at the top of a lock file (kept as is by :func:`save_lock`)."""
    try:
        lines = Path(path).read_text().splitlines(keepends=True)
    except FileNotFoundError:
        return DEFAULT_HEADER
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    return "".join(header) or DEFAULT_HEADER


class _Dumper(yaml.SafeDumper):
    """Dumps like the hand-written lock: block style, strings that look like numbers in double quotes."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    tag = "tag:yaml.org,2002:str"
    style = None
    if dumper.resolve(yaml.ScalarNode, value, (True, False)) != tag:
        style = '"'
    return dumper.represent_scalar(tag, value, style=style)


_Dumper.add_representer(str, _represent_str)


def _entry_data(e: LockEntry) -> dict[str, Any]:
    data: dict[str, Any] = {"url": e.url, "checksum": e.checksum, "checksum_source": e.checksum_source}
    if e.checksum_url is not None:
        data["checksum_url"] = e.checksum_url
    if e.checksum_note is not None:
        data["checksum_note"] = e.checksum_note
    data["size"] = e.size
    return data


def dump_lock(lock: Lock, header: str = DEFAULT_HEADER) -> str:
    """The text of a lock file: header comment, then the artifacts in their order."""
    by_version: dict[tuple[str, str], dict[str, Any]] = {}
    for e in lock.entries:
        art = by_version.setdefault((e.name, e.version), {"version": e.version})
        if e.description is not None:
            art.setdefault("description", e.description)
        art.setdefault("arches", {})[e.arch] = _entry_data(e)
    artifacts: dict[str, Any] = {}
    for (name, _), art in by_version.items():
        if name in artifacts:
            artifacts[name] = [*(artifacts[name] if isinstance(artifacts[name], list) else [artifacts[name]]), art]
        else:
            artifacts[name] = art
    document: dict[str, Any] = {"lock_version": LOCK_VERSION, "artifacts": artifacts}
    if lock.images:
        images: dict[str, Any] = {}
        for i in lock.images:
            img = images.setdefault(i.ref, {})
            if i.note is not None:
                img.setdefault("note", i.note)
            img.setdefault("platforms", {})[i.platform] = {"digest": i.digest, "digest_source": i.digest_source,
                                                           "size": i.size}  # fmt: skip
        document["images"] = images
    body = yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
    )
    return header + body


def save_lock(lock: Lock, path: Path | None = None) -> None:
    """Write ``lock`` atomically, keeping the comment header already in the file."""
    path = Path(path or lock.path)
    text = dump_lock(lock, read_header(path))
    _Checker(path).lock(yaml.safe_load(text))  # never write a lock that would not load
    atomic_write(path, text, mode=0o644)


def lock_sha256(path: Path = DEFAULT_LOCK) -> str:
    """The sha256 hex digest of the lock file's bytes (recorded in build manifests)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
