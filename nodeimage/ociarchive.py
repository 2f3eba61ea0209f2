"""An OCI image layout in a tar (an oci-archive): the deterministic pieces to write one, and reading one back.

Writing (opencontainers/image-spec@v1.1.1: image-layout.md): tar headers
with nothing in them that varies between builds (:func:`tar_header`), and
canonical JSON (:func:`canonical_json`), so the same document is always the
same bytes and digest. Reading (:func:`read_archive`): every member hashed,
the small JSON members kept, each layer's entries listed, in one pass, and
whatever cannot be read noted rather than raised, so a check can name every
problem at once. What an archive must hold is the format's business
(:mod:`nodeimage.formats.containerdisk`); this module knows only the layout.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

# opencontainers/image-spec@v1.1.1: media-types.md, image-layout.md:120-143 (oci-layout), annotations.md:33
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
LAYOUT_VERSION = "1.0.0"
REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "org.opencontainers.image.created"

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
CHUNK = 4 * 1024 * 1024  # how much of a disk or a blob is read at a time: never the whole in memory
_SMALL = 1 << 20  # blobs up to this size are JSON documents, kept in memory when read back
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# --- writing -----------------------------------------------------------------------------------------


def tar_header(name: str, *, size: int = 0, mode: int, mtime: int, uid: int = 0, gid: int = 0,
               directory: bool = False) -> bytes:  # fmt: skip
    """One tar header as tarfile writes it, with nothing in it that varies between builds.

    PAX_FORMAT writes a plain ustar header when every field fits, and a pax
    header only for the fields that do not (here: a size of 8 GiB or more).
    """
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    ti.size = 0 if directory else size
    ti.mode = mode
    ti.mtime = mtime
    ti.uid, ti.gid = uid, gid
    ti.uname = ti.gname = ""
    return ti.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def pad(n: int) -> bytes:
    """The zeros that fill a member of ``n`` bytes up to whole tar blocks."""
    return b"\0" * (-n % BLOCK)


def canonical_json(doc: dict[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, no spaces, so the same document is always the same bytes (and digest)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rfc3339(epoch: int) -> str:
    """The UTC time of ``epoch`` as image-spec's ``created`` fields write it (whole seconds, Z)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def descriptor(media_type: str, data_digest: str, size: int) -> dict[str, Any]:
    """An OCI content descriptor for a blob whose sha256 hex digest is ``data_digest``."""
    return {"mediaType": media_type, "digest": f"sha256:{data_digest}", "size": size}


# --- reading back ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """What is compared for one tar member (of the archive or of the layer)."""

    name: str
    kind: str  # file, dir, other
    mode: int
    uid: int
    gid: int
    uname: str
    gname: str
    mtime: int
    size: int
    sha256: str  # content of a regular file, "" otherwise
    pax: tuple[str, ...]  # names of the pax records in its header


@dataclass
class Archive:
    """An oci-archive as read back: members, the small blobs, the layer's entries, and what could not be read."""

    path: Path
    members: list[Member] = field(default_factory=list)
    data: dict[str, bytes] = field(default_factory=dict)  # member name -> content, for small members
    layers: dict[str, list[Member]] = field(default_factory=dict)  # layer digest -> its entries
    problems: list[str] = field(default_factory=list)

    def json(self, name: str) -> Any:
        """The parsed JSON member ``name`` (None, and a problem noted, if absent or not JSON)."""
        if name not in self.data:
            self.problems.append(f"{self.path}: no {name} in the archive")
            return None
        try:
            return json.loads(self.data[name])
        except ValueError as exc:
            self.problems.append(f"{self.path}: {name} is not JSON: {exc}")
            return None

    def blob_name(self, digest: object) -> str | None:
        if not isinstance(digest, str) or not digest.startswith("sha256:") or not _HEX64.match(digest[7:]):
            return None
        return f"blobs/sha256/{digest[7:]}"


class _Hashing:
    """A read-only file wrapper that hashes everything read through it (the layer, while tarfile parses it)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.hash = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.hash.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def _member(ti: tarfile.TarInfo, digest: str) -> Member:
    kind = "file" if ti.isreg() else "dir" if ti.isdir() else "other"
    return Member(ti.name, kind, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname, int(ti.mtime), ti.size, digest,
                  tuple(sorted(ti.pax_headers)))  # fmt: skip


def _hash(fh: IO[bytes]) -> str:
    h = hashlib.sha256()
    while chunk := fh.read(CHUNK):
        h.update(chunk)
    return h.hexdigest()


def _read_layer(fh: IO[bytes]) -> tuple[str, list[Member], str | None]:
    """The layer's sha256 (every byte of the blob) and its entries, in one pass; an error if it is not a tar."""
    reader = _Hashing(fh)
    entries: list[Member] = []
    error = None
    try:
        with tarfile.open(fileobj=reader, mode="r|") as layer:  # type: ignore[call-overload]
            for ti in layer:
                content = layer.extractfile(ti) if ti.isreg() else None
                entries.append(_member(ti, _hash(content) if content else ""))
    except tarfile.TarError as exc:
        error = str(exc)
    reader.drain()
    return reader.hash.hexdigest(), entries, error


def read_archive(path: Path) -> Archive:
    """Read an oci-archive back: every member hashed, JSON members kept, each layer's entries listed."""
    arc = Archive(Path(path))
    try:
        with tarfile.open(path, mode="r:") as tf:
            infos = tf.getmembers()
            small = {ti.name for ti in infos if ti.isreg() and ti.size <= _SMALL}
            for ti in infos:
                if ti.name in small:
                    fh = tf.extractfile(ti)
                    assert fh is not None
                    arc.data[ti.name] = fh.read()
            manifest_names = manifest_blobs(arc)
            layer_names = set()
            for name in manifest_names:
                doc = parse_json(arc.data.get(name, b""))
                for desc in doc.get("layers", []) if isinstance(doc, dict) else []:
                    blob = arc.blob_name(desc.get("digest") if isinstance(desc, dict) else None)
                    if blob:
                        layer_names.add(blob)
            for ti in infos:
                digest = ""
                if ti.name in arc.data:
                    digest = hashlib.sha256(arc.data[ti.name]).hexdigest()
                elif ti.isreg():
                    fh = tf.extractfile(ti)
                    assert fh is not None
                    if ti.name in layer_names:
                        digest, entries, error = _read_layer(fh)
                        arc.layers[ti.name] = entries
                        if error:
                            arc.problems.append(f"{path}: layer {ti.name} is not a readable tar: {error}")
                    else:
                        digest = _hash(fh)
                arc.members.append(_member(ti, digest))
    except (OSError, tarfile.TarError) as exc:
        arc.problems.append(f"{path}: not a readable tar archive: {exc}")
    return arc


def parse_json(data: bytes) -> Any:
    """The parsed document, or None when ``data`` is not JSON (the caller says what that means)."""
    try:
        return json.loads(data)
    except ValueError:
        return None


def manifest_blobs(arc: Archive) -> list[str]:
    """The blob names the index points at (read leniently: checking the index is the format's business)."""
    index = parse_json(arc.data.get("index.json", b""))
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        return []
    names = []
    for desc in index["manifests"]:
        name = arc.blob_name(desc.get("digest")) if isinstance(desc, dict) else None
        if name:
            names.append(name)
    return names


# --- checking and comparing --------------------------------------------------------------------------


def check_descriptor(arc: Archive, what: str, desc: Any, media_type: str) -> str | None:
    """The blob name a descriptor points at, after checking it (problems go to ``arc.problems``)."""
    p = arc.path
    if not isinstance(desc, dict):
        arc.problems.append(f"{p}: {what} is not a descriptor: {desc!r}")
        return None
    if desc.get("mediaType") != media_type:
        arc.problems.append(f"{p}: {what} has mediaType {desc.get('mediaType')!r}, expected {media_type!r}")
    name = arc.blob_name(desc.get("digest"))
    if name is None:
        arc.problems.append(f"{p}: {what} has no sha256 digest: {desc.get('digest')!r}")
        return None
    sizes = {m.size for m in arc.members if m.name == name}
    if not sizes:
        arc.problems.append(f"{p}: {what} points at {desc['digest']}, which the archive lacks")
        return None
    if desc.get("size") not in sizes:
        arc.problems.append(f"{p}: {what} says size {desc.get('size')!r}, the blob {name} is {sizes.pop()} bytes")
    return name


def member_changes(a: Member, b: Member) -> list[str]:
    """How two members' headers and contents differ, one phrase per difference."""
    changes = []
    for attr in ("kind", "mode", "uid", "gid", "uname", "gname", "mtime", "size", "pax"):
        va, vb = getattr(a, attr), getattr(b, attr)
        if va != vb:
            changes.append(f"{attr} {va:04o} != {vb:04o}" if attr == "mode" else f"{attr} {va!r} != {vb!r}")
    if a.sha256 != b.sha256 and a.size == b.size:
        changes.append("content differs at equal size")
    return changes


def json_changes(a: Any, b: Any, path: str = "") -> list[str]:
    """Leaf-by-leaf differences of two JSON documents (digests shortened)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += json_changes(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [c for i, (x, y) in enumerate(zip(a, b, strict=True)) for c in json_changes(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {json.dumps(a)[:80]} != {json.dumps(b)[:80]}"]

