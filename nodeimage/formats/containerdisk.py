"""containerdisk: the qcow2 as a KubeVirt containerDisk, an OCI image archive (--formats containerdisk).

KubeVirt boots a VM from a container image whose ``/disk`` directory holds
exactly one disk file (qcow2 without a backing file, or raw); it reads the
format from the content, not the name, and serves the file to qemu as uid
107 (kubevirt/kubevirt@v1.9.0: pkg/container-disk/container-disk.go:172-205,
pkg/os/disk/validation.go:12-35, pkg/util/util.go:32). KubeVirt's own disk
images are one tar layer with the disk under /disk, owner 107.107, mode 440
(containerimages/BUILD.bazel:12-14); image-builder's kubevirt targets build
``FROM scratch`` with ``ADD --chown=107:107 ... /disk/image.qcow2``
(kubernetes-sigs/image-builder@v0.1.55:
images/capi/packer/qemu/scripts/build_kubevirt_image.sh:9-15). Cluster API
Provider KubeVirt boots its nodes from such an image
(kubernetes-sigs/cluster-api-provider-kubevirt@v0.11.2:
templates/cluster-template.yaml:65-68).

This unit writes that image without a container engine: an OCI image layout
(opencontainers/image-spec@v1.1.1: image-layout.md) in a tar, the form skopeo
reads as ``oci-archive:PATH`` (containers-transports(5)). One image, ``FROM
scratch``: one layer holding ``disk/`` and ``disk/<name>.qcow2`` (107:107,
0440), a config for linux/<arch> created at the build's SOURCE_DATE_EPOCH,
and index.json naming it by a tag derived from the profile
(``org.opencontainers.image.ref.name``, image-layout.md:145-161).

Reproducible by construction: every tar header has fixed owner (0:0 outside
the layer, 107:107 on the disk), mode and mtime (the epoch), empty user and
group names and no extended header (pax only where ustar cannot hold a
value: a disk of 8 GiB or more gets a size record and nothing else); JSON
is written with sorted keys and no spaces; members come in a fixed order.
The layer is an uncompressed tar (``application/vnd.oci.image.layer.v1.tar``,
which every implementation must support: image-spec@v1.1.1 manifest.md:79-85,
and the form of KubeVirt's cirros image: BUILD.bazel:30-38 has no ``.gz``):
the archive's bytes then depend on no compressor's version, its layer digest
is its diff_id, and a registry copy is compressed in transit by the copier
(skopeo compresses layers it pushes to a registry unless told to keep digests).

The archive is written in one pass over the qcow2, which is hashed while it
is copied: the layer blob's name is its digest, so its tar header is written
with a placeholder name and rewritten once the digest is known (the
placeholder has the same length, so nothing moves). Hence the fixed order
``blobs/ blobs/sha256/ <layer> <config> <manifest> index.json oci-layout``
rather than a sorted one: sorting would put the layer among blobs named by
digests not yet known, and need a second pass over the disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from nodeimage.formats import Format, Recorded, register
from nodeimage.fsutil import atomic_path
from nodeimage.log import die, step

if TYPE_CHECKING:
    from nodeimage.config import BuildConfig
    from nodeimage.profiles import Profile
    from nodeimage.repro import ReproReport

# opencontainers/image-spec@v1.1.1: media-types.md, image-layout.md:120-143 (oci-layout), annotations.md:33
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
LAYOUT_VERSION = "1.0.0"
REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "org.opencontainers.image.created"

# kubevirt/kubevirt@v1.9.0: pkg/os/disk/validation.go:12 (DiskSourceFallbackPath), pkg/util/util.go:32
# (NonRootUID, the qemu user), containerimages/BUILD.bazel:12-14 (mode "440", owner "107.107")
DISK_DIR = "disk"
DISK_UID = DISK_GID = 107
DISK_MODE = 0o440
DIR_MODE = 0o755  # root-owned and world-listable: uid 107 can read /disk whoever owns it
BLOB_MODE = 0o644

_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
_CHUNK = 4 * 1024 * 1024
_SMALL = 1 << 20  # blobs up to this size are JSON documents, kept in memory when read back
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")  # the distribution reference grammar's tag
# image-spec's GOARCH values for the profile arches nodeimage knows (profiles.ARCHES)
_GOARCH = {"amd64": "amd64", "arm64": "arm64"}


# --- names derived from the profile ----------------------------------------------------------------


def disk_name(profile: Profile) -> str:
    """The disk's file name under /disk: the OVA's VM name with .qcow2 (KubeVirt reads any single name)."""
    return f"nodeimage-{profile.name}.qcow2"


def ref_name(profile: Profile) -> str:
    """The image's tag in index.json: profile and Kubernetes version, e.g. ``k8s-1.36-v1.36.4``."""
    return f"{profile.name}-{profile.kubernetes.version}"


# --- writing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    """What a write produced: the digests a caller may print or record."""

    manifest_digest: str
    layer_digest: str
    config_digest: str
    disk_sha256: str
    ref_name: str


def _header(name: str, *, size: int = 0, mode: int, mtime: int, uid: int = 0, gid: int = 0,
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


def _pad(n: int) -> bytes:
    return b"\0" * (-n % _BLOCK)


def _json(doc: dict[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, no spaces, so the same document is always the same bytes (and digest)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _descriptor(media_type: str, data_digest: str, size: int) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": f"sha256:{data_digest}", "size": size}


def write_containerdisk(qcow2: Path, out: Path, *, disk: str, tag: str, epoch: int, arch: str = "amd64") -> Written:
    """Write ``out``, an oci-archive whose one image holds ``qcow2`` at /disk/<disk>; nothing at ``out``
    unless it all succeeds. The qcow2 is streamed and hashed on the way, never held in memory."""
    qcow2, out = Path(qcow2), Path(out)
    if not qcow2.is_file():
        die(f"disk image not found: {qcow2}", hint="build it first: invoke build")
    if "/" in disk or not disk or disk in (".", ".."):
        die(f"invalid containerDisk file name {disk!r}", hint="a plain file name such as node.qcow2")
    if not _TAG.match(tag):
        die(f"invalid image tag {tag!r}", hint="letters, digits, '_', '.', '-'; at most 128; not starting with . or -")
    if arch not in _GOARCH:
        die(f"no OCI architecture known for {arch!r}", hint=f"one of {', '.join(_GOARCH)}")
    size = qcow2.stat().st_size
    inner_name = f"{DISK_DIR}/{disk}"
    inner = _header(f"{DISK_DIR}/", mode=DIR_MODE, mtime=epoch, directory=True) + _header(
        inner_name, size=size, mode=DISK_MODE, mtime=epoch, uid=DISK_UID, gid=DISK_GID
    )
    tail = _pad(size) + b"\0" * (2 * _BLOCK)  # end of the layer archive: two zero blocks
    layer_size = len(inner) + size + len(tail)
    placeholder = f"blobs/sha256/{'0' * 64}"
    with step(f"Writing containerDisk {out}"), atomic_path(out) as tmp, tmp.open("wb") as dst:
        dst.write(_header("blobs/", mode=DIR_MODE, mtime=epoch, directory=True))
        dst.write(_header("blobs/sha256/", mode=DIR_MODE, mtime=epoch, directory=True))
        layer_at = dst.tell()
        first = _header(placeholder, size=layer_size, mode=BLOB_MODE, mtime=epoch)
        dst.write(first)
        layer_h, disk_h = hashlib.sha256(inner), hashlib.sha256()
        dst.write(inner)
        copied = 0
        with qcow2.open("rb") as src:
            while chunk := src.read(_CHUNK):
                layer_h.update(chunk)
                disk_h.update(chunk)
                dst.write(chunk)
                copied += len(chunk)
        if copied != size:
            die(f"{qcow2} changed size while it was packed ({size} -> {copied} bytes)")
        layer_h.update(tail)
        dst.write(tail)  # layer_size is whole blocks: no padding of the outer member
        layer = layer_h.hexdigest()
        header = _header(f"blobs/sha256/{layer}", size=layer_size, mode=BLOB_MODE, mtime=epoch)
        assert len(header) == len(first)
        dst.seek(layer_at)
        dst.write(header)
        dst.seek(0, os.SEEK_END)

        created = _rfc3339(epoch)
        config = _json(
            {
                "architecture": _GOARCH[arch],
                "os": "linux",
                "created": created,
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer}"]},
                "history": [{"created": created, "created_by": f"nodeimage containerdisk: /{inner_name} 107:107 0440"}],
            }
        )
        config_digest = hashlib.sha256(config).hexdigest()
        manifest = _json(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_MEDIA_TYPE,
                "config": _descriptor(CONFIG_MEDIA_TYPE, config_digest, len(config)),
                "layers": [_descriptor(LAYER_MEDIA_TYPE, layer, layer_size)],
                "annotations": {CREATED: created},
            }
        )
        manifest_digest = hashlib.sha256(manifest).hexdigest()
        index = _json(
            {
                "schemaVersion": 2,
                "mediaType": INDEX_MEDIA_TYPE,
                "manifests": [
                    {
                        **_descriptor(MANIFEST_MEDIA_TYPE, manifest_digest, len(manifest)),
                        "platform": {"architecture": _GOARCH[arch], "os": "linux"},
                        "annotations": {REF_NAME: tag},
                    }
                ],
            }
        )
        layout = _json({"imageLayoutVersion": LAYOUT_VERSION})
        for name, data in (
            (f"blobs/sha256/{config_digest}", config),
            (f"blobs/sha256/{manifest_digest}", manifest),
            ("index.json", index),
            ("oci-layout", layout),
        ):
            dst.write(_header(name, size=len(data), mode=BLOB_MODE, mtime=epoch) + data + _pad(len(data)))
        dst.write(b"\0" * (2 * _BLOCK))
        dst.write(b"\0" * (-dst.tell() % _RECORD))  # whole records, as tar writes them
        dst.flush()
        os.fsync(dst.fileno())
    return Written(f"sha256:{manifest_digest}", f"sha256:{layer}", f"sha256:{config_digest}", disk_h.hexdigest(), tag)


# --- reading back ----------------------------------------------------------------------------------


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
        while self.read(_CHUNK):
            pass


def _member(ti: tarfile.TarInfo, digest: str) -> Member:
    kind = "file" if ti.isreg() else "dir" if ti.isdir() else "other"
    return Member(ti.name, kind, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname, int(ti.mtime), ti.size, digest,
                  tuple(sorted(ti.pax_headers)))  # fmt: skip


def _hash(fh: IO[bytes]) -> str:
    h = hashlib.sha256()
    while chunk := fh.read(_CHUNK):
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
            manifest_names = _manifest_blobs(arc)
            layer_names = set()
            for name in manifest_names:
                doc = _loads(arc.data.get(name, b""))
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


def _loads(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _manifest_blobs(arc: Archive) -> list[str]:
    """The blob names the index points at (read leniently; check() reports what is wrong with it)."""
    index = _loads(arc.data.get("index.json", b""))
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        return []
    names = []
    for desc in index["manifests"]:
        name = arc.blob_name(desc.get("digest")) if isinstance(desc, dict) else None
        if name:
            names.append(name)
    return names


# --- checking --------------------------------------------------------------------------------------


def _check_descriptor(arc: Archive, what: str, desc: Any, media_type: str) -> str | None:
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


def check_archive(path: Path, disk_sha256: set[str], *, arch: str | None = None) -> list[str]:
    """Problems inside a containerDisk archive: index → manifest → config and layer digests against their
    blobs, the layer's /disk holding exactly one file (owned 107:107, 0440) whose sha256 is in ``disk_sha256``."""
    arc = read_archive(Path(path))
    if arc.problems and not arc.members:
        return arc.problems
    p = arc.path
    for m in arc.members:
        if m.name.startswith("blobs/sha256/") and m.kind == "file":
            want = m.name.removeprefix("blobs/sha256/")
            if m.sha256 != want:
                arc.problems.append(f"{p}: blob {m.name} has sha256 {m.sha256}: its content is not its name")
    layout = arc.json("oci-layout")
    if isinstance(layout, dict) and layout.get("imageLayoutVersion") != LAYOUT_VERSION:
        arc.problems.append(f"{p}: oci-layout has imageLayoutVersion {layout.get('imageLayoutVersion')!r}")
    index = arc.json("index.json")
    if not isinstance(index, dict):
        return arc.problems
    manifests = index.get("manifests")
    if index.get("schemaVersion") != 2 or not isinstance(manifests, list) or len(manifests) != 1:
        arc.problems.append(f"{p}: index.json must have schemaVersion 2 and exactly one manifest")
        return arc.problems
    desc = manifests[0]
    manifest_blob = _check_descriptor(arc, "index.json's manifest", desc, MANIFEST_MEDIA_TYPE)
    if isinstance(desc, dict):
        if not (desc.get("annotations") or {}).get(REF_NAME):
            arc.problems.append(f"{p}: index.json's manifest has no {REF_NAME} (the image's tag)")
        platform = desc.get("platform") or {}
        if platform.get("os") != "linux" or (arch and platform.get("architecture") != _GOARCH.get(arch, arch)):
            arc.problems.append(f"{p}: index.json's platform is {platform!r}, expected linux/{arch or 'any'}")
    if manifest_blob is None:
        return arc.problems
    manifest = arc.json(manifest_blob)
    if not isinstance(manifest, dict):
        return arc.problems
    if manifest.get("schemaVersion") != 2 or manifest.get("mediaType") != MANIFEST_MEDIA_TYPE:
        arc.problems.append(f"{p}: the manifest is not an OCI image manifest (schemaVersion 2, {MANIFEST_MEDIA_TYPE})")
    config_blob = _check_descriptor(arc, "the manifest's config", manifest.get("config"), CONFIG_MEDIA_TYPE)
    layers = manifest.get("layers")
    if not isinstance(layers, list) or len(layers) != 1:
        arc.problems.append(f"{p}: the manifest must list exactly one layer, found {layers!r}")
        return arc.problems
    layer_blob = _check_descriptor(arc, "the manifest's layer", layers[0], LAYER_MEDIA_TYPE)
    config = arc.json(config_blob) if config_blob else None
    if isinstance(config, dict):
        diff_ids = (config.get("rootfs") or {}).get("diff_ids")
        # An uncompressed layer's diff_id is its own digest (image-spec@v1.1.1 config.md:220-228).
        layer_digest = layers[0].get("digest") if isinstance(layers[0], dict) else None
        if diff_ids != [layer_digest]:
            arc.problems.append(f"{p}: the config's rootfs.diff_ids {diff_ids!r} is not the layer's digest")
        if config.get("os") != "linux" or (arch and config.get("architecture") != _GOARCH.get(arch, arch)):
            arc.problems.append(f"{p}: the config is for {config.get('os')}/{config.get('architecture')}")
    if layer_blob is None:
        return arc.problems
    entries = arc.layers.get(layer_blob, [])
    disk = [e for e in entries if e.name.strip("/").startswith(f"{DISK_DIR}/") and e.name.strip("/") != DISK_DIR]
    if len(disk) != 1 or disk[0].kind != "file":
        # kubevirt/kubevirt@v1.9.0 pkg/container-disk/container-disk.go:190-197: exactly one entry in /disk
        arc.problems.append(f"{p}: the layer's /{DISK_DIR} must hold exactly one file, found {[e.name for e in disk]}")
        return arc.problems
    entry = disk[0]
    if (entry.uid, entry.gid, entry.mode) != (DISK_UID, DISK_GID, DISK_MODE):
        arc.problems.append(f"{p}: /{entry.name} is {entry.uid}:{entry.gid} {entry.mode:04o}, expected "
                            f"{DISK_UID}:{DISK_GID} {DISK_MODE:04o}")  # fmt: skip
    if entry.sha256 not in disk_sha256:
        arc.problems.append(f"{p}: /{entry.name} has sha256 {entry.sha256}, the build's qcow2 is {sorted(disk_sha256)}")
    return arc.problems


# --- comparing -------------------------------------------------------------------------------------


def _member_changes(a: Member, b: Member) -> list[str]:
    changes = []
    for attr in ("kind", "mode", "uid", "gid", "uname", "gname", "mtime", "size", "pax"):
        va, vb = getattr(a, attr), getattr(b, attr)
        if va != vb:
            changes.append(f"{attr} {va:04o} != {vb:04o}" if attr == "mode" else f"{attr} {va!r} != {vb!r}")
    if a.sha256 != b.sha256 and a.size == b.size:
        changes.append("content differs at equal size")
    return changes


def _json_changes(a: Any, b: Any, path: str = "") -> list[str]:
    """Leaf-by-leaf differences of two JSON documents (digests shortened)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _json_changes(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [c for i, (x, y) in enumerate(zip(a, b, strict=True)) for c in _json_changes(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {json.dumps(a)[:80]} != {json.dumps(b)[:80]}"]


def compare_archives(a: Path, b: Path) -> list[str]:
    """Sentences saying how two containerDisk archives differ: members, headers, JSON documents, the disk."""
    ra, rb = read_archive(Path(a)), read_archive(Path(b))
    notes = [*ra.problems, *rb.problems]
    names_a, names_b = [m.name for m in ra.members], [m.name for m in rb.members]
    if names_a != names_b:
        only_a = [n for n in names_a if n not in names_b]
        only_b = [n for n in names_b if n not in names_a]
        notes.append(f"member lists differ: only in a {only_a}, only in b {only_b}"
                     if only_a or only_b else "members come in a different order")  # fmt: skip
    by_b = {m.name: m for m in rb.members}
    for m in ra.members:
        if m.name in by_b and (changes := _member_changes(m, by_b[m.name])):
            notes.append(f"member {m.name}: {'; '.join(changes)}")
    for name in ("index.json", "oci-layout"):
        if name in ra.data and name in rb.data:
            notes += [f"{name}: {c}" for c in _json_changes(_loads(ra.data[name]), _loads(rb.data[name]))]
    for xa, xb in zip(_manifest_blobs(ra), _manifest_blobs(rb), strict=False):
        ma, mb = _loads(ra.data.get(xa, b"")), _loads(rb.data.get(xb, b""))
        notes += [f"manifest: {c}" for c in _json_changes(ma, mb)]
        ca = ra.blob_name(ma.get("config", {}).get("digest")) if isinstance(ma, dict) else None
        cb = rb.blob_name(mb.get("config", {}).get("digest")) if isinstance(mb, dict) else None
        if ca and cb:
            notes += [f"config: {c}" for c in _json_changes(_loads(ra.data.get(ca, b"")), _loads(rb.data.get(cb, b"")))]
    disks: list[str] = []
    disk_differs = False
    for (la, ea), (lb, eb) in zip(sorted(ra.layers.items()), sorted(rb.layers.items()), strict=False):
        eb_by = {e.name: e for e in eb}
        if [e.name for e in ea] != [e.name for e in eb]:
            notes.append(f"layer entries differ: {[e.name for e in ea]} != {[e.name for e in eb]}")
        for e in ea:
            other = eb_by.get(e.name)
            if other is None:
                continue
            if changes := _member_changes(e, other):
                notes.append(f"layer entry /{e.name}: {'; '.join(changes)}")
            if e.kind == "file" and e.sha256 == other.sha256:
                disks.append(f"layer entry /{e.name}: the disk inside is the same (sha256 {e.sha256}): "
                             "only the archive's packing differs")  # fmt: skip
            elif e.kind == "file":
                disk_differs = True
                disks.append(f"layer entry /{e.name}: the disk inside differs (sha256 {e.sha256[:16]} != "
                             f"{other.sha256[:16]}): the qcow2 outputs differ, see their comparison")  # fmt: skip
        if la != lb and not notes and not disk_differs:
            notes.append(f"layer digests differ ({la} != {lb}) for no reason found in headers or content")
    # Whether the disk is the same matters only when something differs.
    return [*notes, *disks] if notes or disk_differs else []


# --- the format unit -------------------------------------------------------------------------------


class ContainerDisk(Format):
    name = "containerdisk"
    filename = "node.containerdisk.tar"
    description = "KubeVirt containerDisk: an OCI image archive (oci-archive) with the qcow2 under /disk/"
    after = ("qcow2",)

    def write(self, config: BuildConfig, written: dict[str, Path], out: Path) -> None:
        write_containerdisk(
            written["qcow2"],
            out,
            disk=disk_name(config.profile),
            tag=ref_name(config.profile),
            epoch=config.epoch,
            arch=config.profile.arch,
        )

    def check(self, path: Path, outputs: Sequence[Recorded], build_dir: Path) -> list[str]:
        """The archive's own digests, and its disk against the build's qcow2 as the manifest records it."""
        images = {o.sha256 for o in outputs if o.format == "qcow2"}
        if not images:
            return [f"{path}: the manifest records no qcow2 output to check the disk inside against"]
        return check_archive(path, images)

    def compare(self, report: ReproReport, rec: Recorded, a: Path, b: Path, scratch: Path) -> None:
        report.notes.setdefault(rec.path, []).extend(compare_archives(a, b))


CONTAINERDISK = register(ContainerDisk())
