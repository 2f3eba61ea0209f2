"""Container images baked into the image: copied by digest, verified, stored where CRI-O reads them.

Every image a node runs at first boot (kubeadm's, the CNI's, the profile's
extras) is pinned in the lock by the digest of its manifest for the image's
platform. The build copies each one with skopeo from its registry, from a
registry mirror (``--registry-mirror http(s)://HOST[/PREFIX]``: the image
``HOST/PATH:TAG`` is read from ``<mirror>/HOST/PATH``) or from an OCI-layout
directory laid out the same way (``--registry-mirror DIR``), first into a
staging area outside the image, where every digest is checked; only when
all match are they copied into the image's containers-storage
(``/var/lib/containers/storage``, overlay driver: what the image's
crio.conf names). A mismatch stops the build before anything is baked.

The store skopeo writes has random parts (overlay's short link names,
lock-file contents, layer creation times); :func:`normalise_store` makes
them functions of the content, so the image stays reproducible.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from nodeimage.lock import ImageEntry
from nodeimage.log import die, info, step
from nodeimage.refs import mirrored, split
from nodeimage.run import run, which

STORE = "/var/lib/containers/storage"
DRIVER = "overlay"
MIRROR_ENV = "NODEIMAGE_REGISTRY_MIRROR"
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


@dataclass(frozen=True)
class Mirror:
    """Where images come from instead of their registries: a registry (``url``) or an OCI-layout tree (``path``)."""

    url: str | None = None
    path: Path | None = None

    @property
    def insecure(self) -> bool:
        return bool(self.url and self.url.startswith("http://"))


def check_registry_mirror(value: str) -> Mirror:
    """Parse --registry-mirror: http(s)://HOST[:PORT][/PREFIX], or a directory of OCI layouts."""
    if value.startswith(("http://", "https://")):
        parts = urlsplit(value)
        if not parts.hostname or parts.query or parts.fragment:
            die(f"invalid registry mirror URL: {value!r}", hint="give http(s)://HOST[:PORT][/PREFIX]")
        return Mirror(url=value.rstrip("/"))
    if "://" in value:
        die(f"invalid registry mirror: {value!r}", hint="give http(s)://HOST[:PORT][/PREFIX] or a directory")
    path = Path(value.removeprefix("oci:"))
    if not path.is_dir():
        die(
            f"registry mirror directory does not exist: {path}",
            hint="an OCI-layout mirror holds the image HOST/PATH:TAG as an OCI layout at <dir>/HOST/PATH",
        )
    return Mirror(path=path)


def _skopeo() -> str:
    return which("skopeo", "skopeo")


def source(entry: ImageEntry, mirror: Mirror | None, *, by_digest: bool = True) -> tuple[str, list[str]]:
    """The skopeo source reference of ``entry`` and the flags it needs."""
    if mirror is not None and mirror.path is not None:
        registry, path, tag = split(entry.ref)
        layout = mirror.path / registry / path
        if not (layout / "index.json").is_file():
            die(
                f"{entry.ref} is not in the OCI mirror: {layout}/index.json does not exist",
                hint="an OCI-layout mirror holds HOST/PATH:TAG at <dir>/HOST/PATH (e.g. written by "
                "`skopeo copy ... oci:<dir>/HOST/PATH:TAG`)",
            )
        return f"oci:{layout}:{tag}", []
    repository = entry.repository
    flags: list[str] = []
    if mirror is not None and mirror.url is not None:
        parts = urlsplit(mirror.url)
        repository = mirrored(entry.ref, parts.netloc + parts.path)
        if mirror.insecure:
            flags.append("--src-tls-verify=false")
    target = f"{repository}@{entry.digest}" if by_digest and entry.digest else f"{repository}:{split(entry.ref)[2]}"
    return f"docker://{target}", flags


def _oci_manifest_digest(layout: Path) -> str:
    index = json.loads((layout / "index.json").read_text())
    manifests = index.get("manifests", [])
    if len(manifests) != 1:
        die(f"{layout}: expected one manifest in the staged OCI layout, found {len(manifests)}")
    return str(manifests[0]["digest"])


def _reusable(layout: Path, digest: str) -> bool:
    """A staged layout whose index names the pinned manifest and holds its blob (else: copy it again)."""
    try:
        manifests = json.loads((layout / "index.json").read_text()).get("manifests", [])
    except (OSError, ValueError, AttributeError):
        return False
    blob = layout / "blobs" / digest.replace(":", "/", 1)
    return len(manifests) == 1 and manifests[0].get("digest") == digest and blob.is_file()


def stage_images(images: Sequence[ImageEntry], staging: Path, mirror: Mirror | None) -> dict[str, Path]:
    """Copy every image into its own OCI layout under ``staging`` and check its digest; return ref -> layout.

    ``staging`` is a cache: a layout is named by the image's pinned digest, so a later build reuses it (its
    digest checked again, its blobs checked by skopeo when baked). Nothing is baked by this step: a digest that
    does not match stops the build here, and a mismatching copy is never kept.
    """
    staging.mkdir(parents=True, exist_ok=True)
    staged = {}
    with step(f"copying {len(images)} container images by digest and checking them"):
        for entry in images:
            assert entry.digest, entry.ref
            layout = staging / entry.digest.replace(":", "-")
            if _reusable(layout, entry.digest):
                info(f"ok {entry.ref} {entry.digest} (already copied)")
                staged[entry.ref] = layout
                continue
            src, flags = source(entry, mirror)
            part = staging / f".{layout.name}.part-{os.getpid()}"
            shutil.rmtree(part, ignore_errors=True)
            arch = entry.platform.split("/")[1]
            try:
                proc = run(
                    [_skopeo(), "copy", "--quiet", "--preserve-digests", f"--override-arch={arch}",
                     "--override-os=linux", *flags, src, f"oci:{part}:{split(entry.ref)[2]}"],
                    check=False, capture=True, timeout=1800,
                )  # fmt: skip
                if proc.returncode != 0:
                    err = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
                    die(
                        f"cannot copy the container image {entry.ref} pinned at {entry.digest} from {src}:\n    "
                        + "\n    ".join(err),
                        hint="a registry serves a pinned image by its digest; a changed or missing image is refused. "
                        "Check the mirror's copy, or the lock entry",
                    )
                got = _oci_manifest_digest(part)
                if got != entry.digest:
                    die(
                        f"digest mismatch for the container image {entry.ref}: expected {entry.digest}, got {got} "
                        f"(from {src})",
                        hint="the mirror's image is not the one the lock pins; nothing was baked",
                    )
                shutil.rmtree(layout, ignore_errors=True)
                os.replace(part, layout)
            finally:
                shutil.rmtree(part, ignore_errors=True)
            info(f"ok {entry.ref} {got}")
            staged[entry.ref] = layout
    return staged


def storage_conf(tree: Path, runroot: Path) -> Path:
    """A storage.conf naming only what the build decides: the host's own containers config is not read."""
    conf = runroot / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "{DRIVER}"\nrunroot = "{runroot}"\ngraphroot = "{tree}{STORE}"\n')
    return conf


def bake(tree: Path, images: Sequence[ImageEntry], staged: dict[str, Path], *, epoch: int) -> None:
    """Copy the staged images into the tree's containers-storage under their references."""
    store = tree / STORE.lstrip("/")
    with step(f"baking {len(images)} container images into {STORE}"), tempfile.TemporaryDirectory(
        prefix="nodeimage-runroot-"
    ) as runroot:
        env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(storage_conf(tree, Path(runroot)))}
        for entry in images:
            dest = f"containers-storage:[{DRIVER}@{store}+{runroot}]{entry.ref}"
            # In a mount namespace of its own: containers/storage's overlay driver bind-mounts its directory
            # onto itself and leaves that mount when the copy ends; here it ends with the namespace.
            run([which("unshare", "util-linux"), "--mount", "--propagation", "private", _skopeo(), "copy", "--quiet",
                 "--preserve-digests", f"oci:{staged[entry.ref]}:{split(entry.ref)[2]}", dest],
                env=env, capture=True, timeout=1800)  # fmt: skip
        normalise_store(store, epoch=epoch)
        for image in list_store(store):
            info(f"baked {', '.join(image['names'])} {image['digest']}")


def _link_id(layer: str) -> str:
    """A 26-character overlay link name derived from the layer ID (containers/storage makes random ones)."""
    return base64.b32encode(hashlib.sha256(layer.encode()).digest()).decode()[:26]


def normalise_store(store: Path, *, epoch: int) -> None:
    """Make the store a function of its content: link names from layer IDs, layer times = epoch, empty locks."""
    overlay = store / DRIVER
    links = overlay / "l"
    renames: dict[str, str] = {}
    for layer_dir in sorted(p for p in overlay.iterdir() if p.is_dir() and p.name != "l"):
        link_file = layer_dir / "link"
        if link_file.is_file():
            old, new = link_file.read_text().strip(), _link_id(layer_dir.name)
            renames[old] = new
            link_file.write_text(new)
    for old, new in renames.items():
        if (links / old).is_symlink():
            target = os.readlink(links / old)
            (links / old).unlink()
            (links / new).unlink(missing_ok=True)
            (links / new).symlink_to(target)
    for layer_dir in sorted(p for p in overlay.iterdir() if p.is_dir() and p.name != "l"):
        lower = layer_dir / "lower"
        if lower.is_file():
            names = [p.removeprefix("l/") for p in lower.read_text().split(":")]
            lower.write_text(":".join(f"l/{renames.get(n, n)}" for n in names))
    layers_json = store / f"{DRIVER}-layers" / "layers.json"
    if layers_json.is_file():
        layers = json.loads(layers_json.read_text())
        stamp = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for layer in layers:
            layer["created"] = stamp
        layers_json.write_text(json.dumps(layers, separators=(",", ":")))
    for lock in store.rglob("*.lock"):
        lock.write_bytes(b"")
    # A device node for project quotas, made for the build host's disk: the node's CRI-O makes its own.
    (overlay / "backingFsBlockDev").unlink(missing_ok=True)


def list_store(store: Path) -> list[dict[str, object]]:
    """The images of a containers-storage (overlay) store as its images.json records them."""
    path = store / f"{DRIVER}-images" / "images.json"
    if not path.is_file():
        return []
    records = json.loads(path.read_text())
    return [{"names": i.get("names", []), "digest": i.get("digest"), "id": i.get("id")} for i in records]


def _inspect(ref: str, args: list[str]) -> bytes:
    """The raw manifest skopeo reads; on failure die with skopeo's reason and what to do."""
    proc = run([_skopeo(), "inspect", "--raw", *args], check=False, capture=True, timeout=300)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()[-2:]
        die(
            f"cannot read the manifest of {ref} from {args[-1]}:\n    " + "\n    ".join(err),
            hint=f"the registry is unreachable or has no such tag; use --registry-mirror URL_OR_DIR (or "
            f"{MIRROR_ENV}) to ask a registry mirror or an OCI-layout directory instead",
        )
    return proc.stdout


def resolve(ref: str, platform: str, mirror: Mirror | None) -> tuple[str, int]:
    """The digest of ``ref``'s manifest for ``platform`` (and the bytes of its config and layers), as a registry or
    mirror serves the tag now: what `invoke lock` records, trusting it on first use."""
    entry = ImageEntry(ref, platform, None, "trust-on-first-use")
    src, flags = source(entry, mirror, by_digest=False)
    flags = [f.replace("--src-tls-verify", "--tls-verify") for f in flags]  # inspect has one source, no prefix
    os_name, arch = platform.split("/")[:2]
    raw = _inspect(ref, [*flags, src])
    doc = json.loads(raw)
    if doc.get("mediaType") in INDEX_TYPES or "manifests" in doc:
        match = [m for m in doc.get("manifests", []) if m.get("platform", {}).get("architecture") == arch
                 and m.get("platform", {}).get("os") == os_name]  # fmt: skip
        if not match:
            die(f"{ref} has no image for {platform}", hint="choose a tag that is built for the profile's platform")
        digest = str(match[0]["digest"])
        if src.startswith("oci:"):  # skopeo shows an OCI layout's index, not the manifest: read the blob
            layout = Path(src.removeprefix("oci:").rsplit(":", 1)[0])
            raw = (layout / "blobs" / digest.replace(":", "/", 1)).read_bytes()
        else:
            raw = _inspect(ref, [*flags, f"{src.rsplit(':', 1)[0]}@{digest}"])
        doc = json.loads(raw)
    else:
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    layers = sum(int(layer.get("size", 0)) for layer in doc.get("layers", []))
    return digest, int(doc.get("config", {}).get("size", 0)) + layers
