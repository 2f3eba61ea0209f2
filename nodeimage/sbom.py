"""An SPDX 2.3 JSON SBOM of a built image: its distro packages, every lock artifact and every baked image.

The packages are read from the image's ``/var/lib/dpkg/status`` without
booting it. The document is a function of its inputs only: the namespace
is derived from the image's SHA-256 (no random UUID) and the creation time
is the build's SOURCE_DATE_EPOCH, so the same image gives the same SBOM.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from nodeimage import __version__
from nodeimage.fsutil import atomic_write, file_sha256
from nodeimage.lock import ImageEntry, LockEntry
from nodeimage.log import die, step
from nodeimage.refs import split

if TYPE_CHECKING:
    from nodeimage.config import BuildConfig

DPKG_STATUS = "/var/lib/dpkg/status"
OS_RELEASE = "/usr/lib/os-release"  # /etc/os-release is a symlink to it on Debian and Ubuntu
NAMESPACE_BASE = "https://nodeimage.invalid/spdx"
_SPDXID_BAD = re.compile(r"[^A-Za-z0-9.-]+")
_CHECKSUM_ALGOS = {"sha256": "SHA256", "sha512": "SHA512", "sha1": "SHA1"}


@dataclass(frozen=True)
class DebPackage:
    """One installed package as dpkg records it."""

    name: str
    version: str
    arch: str
    source: str | None = None
    maintainer: str | None = None
    homepage: str | None = None


def parse_dpkg_status(text: str) -> list[DebPackage]:
    """The installed packages of a dpkg status file, sorted by (name, arch).

    Only stanzas whose Status ends in "installed" count: removed packages
    with leftover config ("deinstall ok config-files") are not in the image.
    """
    packages = []
    for stanza in re.split(r"\n\s*\n", text.strip()):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t"):
                continue  # continuation of a multi-line field; none of ours need it
            name, sep, value = line.partition(":")
            if not sep:
                die(f"{DPKG_STATUS}: malformed line {line!r}", hint="the image's dpkg database is damaged")
            fields[name.strip()] = value.strip()
        if not fields:
            continue
        if not fields.get("Status", "").endswith(" installed"):
            continue
        for required in ("Package", "Version", "Architecture"):
            if required not in fields:
                die(f"{DPKG_STATUS}: an installed package stanza lacks {required}: {stanza[:200]!r}")
        source = fields.get("Source")
        packages.append(
            DebPackage(
                name=fields["Package"],
                version=fields["Version"],
                arch=fields["Architecture"],
                source=source.split(" ", 1)[0] if source else None,
                maintainer=fields.get("Maintainer"),
                homepage=fields.get("Homepage"),
            )
        )
    return sorted(packages, key=lambda p: (p.name, p.arch))


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines of os-release(5), quotes removed."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            out[key.strip()] = value.strip().strip("\"'")
    return out


def _spdx_id(prefix: str, *parts: str) -> str:
    return "SPDXRef-" + "-".join(_SPDXID_BAD.sub("-", p).strip("-") for p in (prefix, *parts))


def _iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _supplier(maintainer: str | None) -> str:
    """dpkg's ``Name <email>`` as SPDX's ``Organization: Name (email)``."""
    if not maintainer:
        return "NOASSERTION"
    m = re.fullmatch(r"(.*?)\s*<([^>]*)>", maintainer)
    return f"Organization: {m[1]} ({m[2]})" if m else f"Organization: {maintainer}"


def _deb_package(p: DebPackage, distro: str, distro_version: str, spdx_id: str) -> dict[str, object]:
    qualifiers = f"arch={quote(p.arch)}"
    if distro_version:
        qualifiers += f"&distro={quote(distro)}-{quote(distro_version)}"
    purl = f"pkg:deb/{quote(distro)}/{quote(p.name)}@{quote(p.version)}?{qualifiers}"
    pkg: dict[str, object] = {
        "SPDXID": spdx_id,
        "name": p.name,
        "versionInfo": p.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "supplier": _supplier(p.maintainer),
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl}],
    }
    if p.homepage:
        pkg["homepage"] = p.homepage
    if p.source and p.source != p.name:
        pkg["sourceInfo"] = f"built from Debian source package {p.source}"
    return pkg


def _artifact_package(e: LockEntry, spdx_id: str) -> dict[str, object]:
    purl = f"pkg:generic/{quote(e.name)}@{quote(e.version)}?download_url={quote(e.url, safe='')}"
    pkg: dict[str, object] = {
        "SPDXID": spdx_id,
        "name": e.name,
        "versionInfo": e.version,
        "downloadLocation": e.url,
        "filesAnalyzed": False,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "packageFileName": e.filename,
        "comment": f"lock artifact for {e.arch}; checksum source: {e.checksum_source}",
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl}],
    }
    if e.checksum:
        algo, _, value = e.checksum.partition(":")
        if algo not in _CHECKSUM_ALGOS or not value:
            die(f"lock entry {e.label}: unsupported checksum {e.checksum!r}", hint="use sha256:<hex> or sha512:<hex>")
        pkg["checksums"] = [{"algorithm": _CHECKSUM_ALGOS[algo], "checksumValue": value}]
    return pkg


def _image_package(i: ImageEntry, spdx_id: str) -> dict[str, object]:
    """A baked container image, named by the purl spec's oci type (the digest is the version)."""
    assert i.digest, f"{i.ref} has no digest"
    registry, path, tag = split(i.ref)
    arch = i.platform.split("/")[1]
    purl = (f"pkg:oci/{quote(path.rsplit('/', 1)[-1])}@{quote(i.digest)}?"
            f"repository_url={quote(registry + '/' + path, safe='')}&tag={quote(tag)}&arch={quote(arch)}")  # fmt: skip
    algo, _, value = i.digest.partition(":")
    return {
        "SPDXID": spdx_id,
        "name": f"{registry}/{path}",
        "versionInfo": tag,
        "downloadLocation": f"{registry}/{path}@{i.digest}",
        "filesAnalyzed": False,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": _CHECKSUM_ALGOS[algo], "checksumValue": value}],
        "comment": f"container image baked into /var/lib/containers/storage for {i.platform}; the checksum is its "
        f"manifest digest ({i.digest_source})",
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl}],
    }


def build_sbom(
    *,
    image_name: str,
    image_sha256: str,
    packages: Sequence[DebPackage],
    lock_entries: Iterable[LockEntry],
    profile: str,
    epoch: int,
    os_release: dict[str, str] | None = None,
    images: Sequence[ImageEntry] = (),
) -> dict[str, object]:
    """The SPDX 2.3 document as a dict: the image package CONTAINS every deb, lock artifact and baked image."""
    if not re.fullmatch(r"[0-9a-f]{64}", image_sha256):
        die(f"image digest is not a SHA-256 hex string: {image_sha256!r}")
    osr = os_release or {}
    distro = osr.get("ID", "debian")
    distro_version = osr.get("VERSION_ID", "")
    image_id = "SPDXRef-Image"
    image_pkg: dict[str, object] = {
        "SPDXID": image_id,
        "name": f"nodeimage-{profile}",
        "versionInfo": profile,
        "packageFileName": image_name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "checksums": [{"algorithm": "SHA256", "checksumValue": image_sha256}],
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "description": f"Kubernetes node image, profile {profile}"
        + (f", {osr['PRETTY_NAME']}" if "PRETTY_NAME" in osr else ""),
    }
    pkgs: list[dict[str, object]] = [image_pkg]
    rels: list[dict[str, str]] = [
        {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": image_id}
    ]
    seen: set[str] = {image_id}

    def add(pkg_id: str, make: Callable[[str], dict[str, object]]) -> None:
        n, unique = 2, pkg_id
        while unique in seen:  # names that differ only in characters SPDX ids cannot hold
            unique, n = f"{pkg_id}-{n}", n + 1
        seen.add(unique)
        pkgs.append(make(unique))
        rels.append({"spdxElementId": image_id, "relationshipType": "CONTAINS", "relatedSpdxElement": unique})

    for p in packages:
        add(_spdx_id("deb", p.name, p.arch), lambda i, p=p: _deb_package(p, distro, distro_version, i))
    for e in sorted(lock_entries, key=lambda e: (e.name, e.arch)):
        add(_spdx_id("artifact", e.name, e.arch), lambda i, e=e: _artifact_package(e, i))
    for img in sorted(images, key=lambda i: (i.ref, i.platform)):
        add(_spdx_id("image", img.ref, img.platform), lambda i, img=img: _image_package(img, i))

    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"nodeimage-{profile}-{image_name}",
        "documentNamespace": f"{NAMESPACE_BASE}/{quote(profile)}/{image_sha256}",
        "creationInfo": {"created": _iso(epoch), "creators": [f"Tool: nodeimage-{__version__}"]},
        "documentDescribes": [image_id],
        "packages": pkgs,
        "relationships": rels,
    }


def write_sbom(
    image_qcow2: Path,
    out: Path,
    *,
    entries: Sequence[LockEntry],
    images: Sequence[ImageEntry],
    profile: str,
    epoch: int,
    package_db: str = DPKG_STATUS,
    read_file: Callable[[Path, str], bytes] | None = None,
) -> None:
    """Write the SPDX 2.3 JSON SBOM of ``image_qcow2`` to ``out`` (atomically).

    ``read_file`` reads one file out of the image; it defaults to
    :func:`nodeimage.disk.read_file` (debugfs, no boot, no mount).
    """
    if read_file is None:
        from nodeimage.disk import read_file as disk_read_file

        read_file = disk_read_file
    image_qcow2 = Path(image_qcow2)
    if not image_qcow2.is_file():
        die(f"disk image not found: {image_qcow2}")
    with step(f"Writing SBOM {out}"):
        status = read_file(image_qcow2, package_db).decode("utf-8", errors="replace")
        packages = parse_dpkg_status(status)
        if not packages:
            die(f"{image_qcow2}: {package_db} lists no installed package", hint="is this a Debian or Ubuntu image?")
        os_release = parse_os_release(read_file(image_qcow2, OS_RELEASE).decode("utf-8", errors="replace"))
        doc = build_sbom(
            image_name=image_qcow2.name,
            image_sha256=file_sha256(image_qcow2),
            packages=packages,
            lock_entries=entries,
            profile=profile,
            epoch=epoch,
            os_release=os_release,
            images=images,
        )
        atomic_write(Path(out), json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def write_build_sbom(image_qcow2: Path, config: BuildConfig, out: Path) -> None:
    """The SBOM of a build's qcow2, from its configuration."""
    write_sbom(image_qcow2, out, entries=config.entries, images=config.images, profile=config.profile.name,
               epoch=config.epoch, package_db=config.distro.package_db)  # fmt: skip
