"""The SPDX SBOM: dpkg status parsing and a deterministic, valid SPDX 2.3 document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodeimage.lock import ImageEntry, LockEntry
from nodeimage.log import NodeimageError
from nodeimage.sbom import build_sbom, parse_dpkg_status, parse_os_release, write_sbom

STATUS = """\
Package: adduser
Status: install ok installed
Maintainer: Debian Adduser Developers <adduser@packages.debian.org>
Architecture: all
Version: 3.134
Description: add and remove users and groups
 This package includes the 'adduser' and 'deluser' commands.
 .
 More text: with a colon.

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: glibc (2.36-9+deb12u4)
Version: 2.36-9+deb12u4
Homepage: https://www.gnu.org/software/libc/libc.html

Package: old-tool
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: libc6
Status: hold ok installed
Architecture: i386
Version: 2.36-9+deb12u4
Source: glibc
"""
OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
DIGEST = "ab" * 32
ENTRIES = [
    LockEntry(
        name="cri-o",
        version="v1.17.2",
        arch="amd64",
        url="https://example.org/crio-v1.17.2.tar.gz",
        checksum="sha256:" + "cd" * 32,
        checksum_source="upstream",
    ),
    LockEntry(
        name="kubernetes-node",
        version="v1.17.17",
        arch="amd64",
        url="https://dl.k8s.io/v1.17.17/kubernetes-node-linux-amd64.tar.gz",
        checksum="sha512:" + "ef" * 64,
        checksum_source="upstream",
    ),
    LockEntry(
        name="weave-manifest",
        version="2.8.1",
        arch="all",
        url="https://example.org/weave.yaml",
        checksum=None,
        checksum_source="trust-on-first-use",
    ),
]


IMAGES = [
    ImageEntry("registry.k8s.io/pause:3.1", "linux/amd64", "sha256:" + "12" * 32, "trust-on-first-use", 1000),
    ImageEntry("docker.io/weaveworks/weave-kube:2.8.1", "linux/amd64", "sha256:" + "34" * 32, "upstream", 2000),
]


def _doc(**kw: object) -> dict:  # type: ignore[type-arg]
    args: dict[str, object] = dict(
        image_name="node.qcow2",
        image_sha256=DIGEST,
        packages=parse_dpkg_status(STATUS),
        lock_entries=ENTRIES,
        profile="k8s-1.17",
        epoch=1609459200,
        os_release=parse_os_release(OS_RELEASE),
        images=IMAGES,
    )
    args.update(kw)
    return build_sbom(**args)  # type: ignore[arg-type]


def test_parse_dpkg_status_keeps_installed_packages_only() -> None:
    pkgs = parse_dpkg_status(STATUS)
    assert [(p.name, p.arch, p.version) for p in pkgs] == [
        ("adduser", "all", "3.134"),
        ("libc6", "amd64", "2.36-9+deb12u4"),
        ("libc6", "i386", "2.36-9+deb12u4"),
    ]
    assert pkgs[1].source == "glibc"
    assert pkgs[1].homepage == "https://www.gnu.org/software/libc/libc.html"


def test_parse_dpkg_status_rejects_a_stanza_without_version() -> None:
    with pytest.raises(NodeimageError, match="lacks Version"):
        parse_dpkg_status("Package: x\nStatus: install ok installed\nArchitecture: all\n")


def test_document_is_spdx_2_3_with_derived_namespace_and_fixed_time() -> None:
    doc = _doc()
    assert doc["spdxVersion"] == "SPDX-2.3"
    assert doc["documentNamespace"] == f"https://nodeimage.invalid/spdx/k8s-1.17/{DIGEST}"
    assert doc["creationInfo"]["created"] == "2021-01-01T00:00:00Z"
    assert json.dumps(_doc()) == json.dumps(doc)


def test_image_contains_every_package_and_artifact() -> None:
    doc = _doc()
    by_id = {p["SPDXID"]: p for p in doc["packages"]}
    assert by_id["SPDXRef-Image"]["checksums"] == [{"algorithm": "SHA256", "checksumValue": DIGEST}]
    contained = {r["relatedSpdxElement"] for r in doc["relationships"] if r["relationshipType"] == "CONTAINS"}
    assert contained == set(by_id) - {"SPDXRef-Image"}
    assert len(contained) == 3 + 3 + 2
    libc = by_id["SPDXRef-deb-libc6-amd64"]
    assert (
        libc["externalRefs"][0]["referenceLocator"]
        == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"
    )
    assert by_id["SPDXRef-deb-adduser-all"]["supplier"] == (
        "Organization: Debian Adduser Developers (adduser@packages.debian.org)"
    )
    crio = by_id["SPDXRef-artifact-cri-o-amd64"]
    assert crio["downloadLocation"] == "https://example.org/crio-v1.17.2.tar.gz"
    assert crio["versionInfo"] == "v1.17.2"
    assert crio["checksums"] == [{"algorithm": "SHA256", "checksumValue": "cd" * 32}]
    assert by_id["SPDXRef-artifact-kubernetes-node-amd64"]["checksums"][0]["algorithm"] == "SHA512"
    assert "checksums" not in by_id["SPDXRef-artifact-weave-manifest-all"]  # not recorded yet: no claim


def test_every_baked_image_is_listed_by_its_manifest_digest() -> None:
    by_id = {p["SPDXID"]: p for p in _doc()["packages"]}
    pause = by_id["SPDXRef-image-registry.k8s.io-pause-3.1-linux-amd64"]
    assert pause["name"] == "registry.k8s.io/pause" and pause["versionInfo"] == "3.1"
    assert pause["checksums"] == [{"algorithm": "SHA256", "checksumValue": "12" * 32}]
    assert pause["primaryPackagePurpose"] == "CONTAINER"
    assert pause["externalRefs"][0]["referenceLocator"] == (
        f"pkg:oci/pause@sha256%3A{'12' * 32}?repository_url=registry.k8s.io%2Fpause&tag=3.1&arch=amd64"
    )
    weave = by_id["SPDXRef-image-docker.io-weaveworks-weave-kube-2.8.1-linux-amd64"]
    assert weave["downloadLocation"] == f"docker.io/weaveworks/weave-kube@sha256:{'34' * 32}"


def test_rejects_a_bad_image_digest() -> None:
    with pytest.raises(NodeimageError, match="not a SHA-256 hex string: 'xyz'"):
        _doc(image_sha256="xyz")


def test_write_sbom_reads_the_image_through_read_file(tmp_path: Path) -> None:
    image = tmp_path / "node.qcow2"
    image.write_bytes(b"not really a disk")
    files = {"/var/lib/dpkg/status": STATUS.encode(), "/usr/lib/os-release": OS_RELEASE.encode()}
    asked: list[str] = []

    def fake_read(img: Path, path: str) -> bytes:
        assert img == image
        asked.append(path)
        return files[path]

    out = tmp_path / "node.spdx.json"
    write_sbom(image, out, entries=ENTRIES, images=IMAGES, profile="k8s-1.17", epoch=0, read_file=fake_read)
    doc = json.loads(out.read_text())
    assert sorted(asked) == sorted(files)
    assert len(doc["packages"]) == 1 + 3 + 3 + 2
    assert doc["packages"][0]["description"].endswith("Debian GNU/Linux 12 (bookworm)")


def test_validates_with_spdx_tools(tmp_path: Path) -> None:
    """The reference SPDX parser and validator accepts the document (and rejects a broken one)."""
    pytest.importorskip("spdx_tools", reason="spdx-tools not installed (pip install spdx-tools)")
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    good = tmp_path / "good.spdx.json"
    good.write_text(json.dumps(_doc()))
    assert validate_full_spdx_document(parse_file(str(good))) == []
    broken = _doc()
    broken["relationships"][1]["relatedSpdxElement"] = "SPDXRef-nothing"
    bad = tmp_path / "bad.spdx.json"
    bad.write_text(json.dumps(broken))
    assert validate_full_spdx_document(parse_file(str(bad))) != []
