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

The OCI layout's pieces (deterministic tar headers, canonical JSON, reading an
archive back) are :mod:`nodeimage.ociarchive`, outside this package: the
format registry imports every module in it as a format.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nodeimage.formats import Format, Recorded, register
from nodeimage.fsutil import atomic_path
from nodeimage.log import die, step
from nodeimage.ociarchive import (
    BLOCK,
    CHUNK,
    CONFIG_MEDIA_TYPE,
    CREATED,
    INDEX_MEDIA_TYPE,
    LAYER_MEDIA_TYPE,
    LAYOUT_VERSION,
    MANIFEST_MEDIA_TYPE,
    RECORD,
    REF_NAME,
    canonical_json,
    check_descriptor,
    descriptor,
    json_changes,
    manifest_blobs,
    member_changes,
    pad,
    parse_json,
    read_archive,
    rfc3339,
    tar_header,
)

if TYPE_CHECKING:
    from nodeimage.config import BuildConfig
    from nodeimage.profiles import Profile
    from nodeimage.repro import ReproReport

# kubevirt/kubevirt@v1.9.0: pkg/os/disk/validation.go:12 (DiskSourceFallbackPath), pkg/util/util.go:32
# (NonRootUID, the qemu user), containerimages/BUILD.bazel:12-14 (mode "440", owner "107.107")
DISK_DIR = "disk"
DISK_UID = DISK_GID = 107
DISK_MODE = 0o440
DIR_MODE = 0o755  # root-owned and world-listable: uid 107 can read /disk whoever owns it
BLOB_MODE = 0o644
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
    inner = tar_header(f"{DISK_DIR}/", mode=DIR_MODE, mtime=epoch, directory=True) + tar_header(
        inner_name, size=size, mode=DISK_MODE, mtime=epoch, uid=DISK_UID, gid=DISK_GID
    )
    tail = pad(size) + b"\0" * (2 * BLOCK)  # end of the layer archive: two zero blocks
    layer_size = len(inner) + size + len(tail)
    placeholder = f"blobs/sha256/{'0' * 64}"
    with step(f"Writing containerDisk {out}"), atomic_path(out) as tmp, tmp.open("wb") as dst:
        dst.write(tar_header("blobs/", mode=DIR_MODE, mtime=epoch, directory=True))
        dst.write(tar_header("blobs/sha256/", mode=DIR_MODE, mtime=epoch, directory=True))
        layer_at = dst.tell()
        first = tar_header(placeholder, size=layer_size, mode=BLOB_MODE, mtime=epoch)
        dst.write(first)
        layer_h, disk_h = hashlib.sha256(inner), hashlib.sha256()
        dst.write(inner)
        copied = 0
        with qcow2.open("rb") as src:
            while chunk := src.read(CHUNK):
                layer_h.update(chunk)
                disk_h.update(chunk)
                dst.write(chunk)
                copied += len(chunk)
        if copied != size:
            die(f"{qcow2} changed size while it was packed ({size} -> {copied} bytes)")
        layer_h.update(tail)
        dst.write(tail)  # layer_size is whole blocks: no padding of the outer member
        layer = layer_h.hexdigest()
        header = tar_header(f"blobs/sha256/{layer}", size=layer_size, mode=BLOB_MODE, mtime=epoch)
        assert len(header) == len(first)
        dst.seek(layer_at)
        dst.write(header)
        dst.seek(0, os.SEEK_END)

        created = rfc3339(epoch)
        config = canonical_json(
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
        manifest = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_MEDIA_TYPE,
                "config": descriptor(CONFIG_MEDIA_TYPE, config_digest, len(config)),
                "layers": [descriptor(LAYER_MEDIA_TYPE, layer, layer_size)],
                "annotations": {CREATED: created},
            }
        )
        manifest_digest = hashlib.sha256(manifest).hexdigest()
        index = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": INDEX_MEDIA_TYPE,
                "manifests": [
                    {
                        **descriptor(MANIFEST_MEDIA_TYPE, manifest_digest, len(manifest)),
                        "platform": {"architecture": _GOARCH[arch], "os": "linux"},
                        "annotations": {REF_NAME: tag},
                    }
                ],
            }
        )
        layout = canonical_json({"imageLayoutVersion": LAYOUT_VERSION})
        for name, data in (
            (f"blobs/sha256/{config_digest}", config),
            (f"blobs/sha256/{manifest_digest}", manifest),
            ("index.json", index),
            ("oci-layout", layout),
        ):
            dst.write(tar_header(name, size=len(data), mode=BLOB_MODE, mtime=epoch) + data + pad(len(data)))
        dst.write(b"\0" * (2 * BLOCK))
        dst.write(b"\0" * (-dst.tell() % RECORD))  # whole records, as tar writes them
        dst.flush()
        os.fsync(dst.fileno())
    return Written(f"sha256:{manifest_digest}", f"sha256:{layer}", f"sha256:{config_digest}", disk_h.hexdigest(), tag)


# --- checking --------------------------------------------------------------------------------------


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
    manifest_blob = check_descriptor(arc, "index.json's manifest", desc, MANIFEST_MEDIA_TYPE)
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
    config_blob = check_descriptor(arc, "the manifest's config", manifest.get("config"), CONFIG_MEDIA_TYPE)
    layers = manifest.get("layers")
    if not isinstance(layers, list) or len(layers) != 1:
        arc.problems.append(f"{p}: the manifest must list exactly one layer, found {layers!r}")
        return arc.problems
    layer_blob = check_descriptor(arc, "the manifest's layer", layers[0], LAYER_MEDIA_TYPE)
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
        if m.name in by_b and (changes := member_changes(m, by_b[m.name])):
            notes.append(f"member {m.name}: {'; '.join(changes)}")
    for name in ("index.json", "oci-layout"):
        if name in ra.data and name in rb.data:
            notes += [f"{name}: {c}" for c in json_changes(parse_json(ra.data[name]), parse_json(rb.data[name]))]
    for xa, xb in zip(manifest_blobs(ra), manifest_blobs(rb), strict=False):
        ma, mb = parse_json(ra.data.get(xa, b"")), parse_json(rb.data.get(xb, b""))
        notes += [f"manifest: {c}" for c in json_changes(ma, mb)]
        ca = ra.blob_name(ma.get("config", {}).get("digest")) if isinstance(ma, dict) else None
        cb = rb.blob_name(mb.get("config", {}).get("digest")) if isinstance(mb, dict) else None
        if ca and cb:
            config_a, config_b = parse_json(ra.data.get(ca, b"")), parse_json(rb.data.get(cb, b""))
            notes += [f"config: {c}" for c in json_changes(config_a, config_b)]
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
            if changes := member_changes(e, other):
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
