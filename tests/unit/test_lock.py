"""The lock file model: loading the real lock, strict validation, byte-stable saving."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeimage.lock import DEFAULT_LOCK, dump_lock, load_lock, lock_sha256, read_header, save_lock
from nodeimage.log import NodeimageError

REAL = yaml.safe_load(DEFAULT_LOCK.read_text())


def write_lock(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "artifacts.lock.yaml"
    path.write_text("# test lock\n" + yaml.safe_dump(data, sort_keys=False))
    return path


def test_real_lock_loads() -> None:
    lock = load_lock(DEFAULT_LOCK)
    assert {"kubernetes-node", "cri-o", "kata-static", "weave-manifest", "ubuntu-20.04-cloudimg"} <= set(lock.names())
    node = lock.entry("kubernetes-node", "amd64")
    assert node.algorithm == "sha512" and len(node.digest or "") == 128
    assert node.filename == "kubernetes-node-linux-amd64.tar.gz"
    assert lock.entry("kubernetes-node", "arm64").url.endswith("linux-arm64.tar.gz")
    tofu = lock.entry("cri-o", "amd64")
    assert tofu.checksum is None and tofu.algorithm is None and tofu.checksum_source == "trust-on-first-use"
    ubuntu = lock.entry("ubuntu-20.04-cloudimg", "amd64")
    assert ubuntu.checksum_url and ubuntu.checksum_url.endswith("/SHA256SUMS") and ubuntu.version == "20.04"


def test_entry_falls_back_to_all() -> None:
    lock = load_lock(DEFAULT_LOCK)
    assert lock.entry("weave-manifest", "arm64").arch == "all"


def test_entry_missing_arch_names_lock_artifact_and_arches() -> None:
    with pytest.raises(NodeimageError) as err:
        load_lock(DEFAULT_LOCK).entry("cri-o", "arm64")
    text = str(err.value)
    assert str(DEFAULT_LOCK) in text and "'cri-o'" in text and "'arm64'" in text and "amd64" in text


def test_entry_unknown_name_lists_known() -> None:
    with pytest.raises(NodeimageError, match="(?s)no artifact named 'crio'.*cri-o"):
        load_lock(DEFAULT_LOCK).entry("crio", "amd64")


def test_select_checks_expected_version() -> None:
    lock = load_lock(DEFAULT_LOCK)
    chosen = lock.select({"cri-o": "v1.17.2", "ubuntu-20.04-cloudimg": None}, "amd64")
    assert [e.name for e in chosen] == ["cri-o", "ubuntu-20.04-cloudimg"]
    with pytest.raises(NodeimageError, match="cri-o is locked at version 'v1.17.2' but 'v1.17.3' is expected"):
        lock.select({"cri-o": "v1.17.3"}, "amd64")


def test_save_of_unchanged_lock_is_byte_identical(tmp_path: Path) -> None:
    copy_path = tmp_path / "lock.yaml"
    copy_path.write_bytes(DEFAULT_LOCK.read_bytes())
    save_lock(load_lock(copy_path))
    assert copy_path.read_bytes() == DEFAULT_LOCK.read_bytes()


def test_save_records_one_change_and_keeps_header(tmp_path: Path) -> None:
    path = tmp_path / "lock.yaml"
    path.write_bytes(DEFAULT_LOCK.read_bytes())
    lock = load_lock(path)
    digest = "sha256:" + "ab" * 32
    updated = replace(lock.entry("cri-o", "amd64"), checksum=digest, size=1234)
    save_lock(lock.replace_entry(updated))
    again = load_lock(path)
    assert again.entry("cri-o", "amd64").checksum == digest and again.entry("cri-o", "amd64").size == 1234
    assert again.entry("conmon", "amd64").checksum is None
    assert read_header(path) == read_header(DEFAULT_LOCK)
    before = DEFAULT_LOCK.read_text().splitlines()
    after = path.read_text().splitlines()
    assert len(before) == len(after)
    assert sum(a != b for a, b in zip(before, after, strict=True)) == 2  # the checksum and the size line


def test_dump_quotes_strings_that_look_like_numbers() -> None:
    text = dump_lock(load_lock(DEFAULT_LOCK))
    assert 'version: "20.04"' in text


def test_lock_sha256_follows_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "lock.yaml"
    path.write_bytes(DEFAULT_LOCK.read_bytes())
    assert lock_sha256(path) == hashlib.sha256(DEFAULT_LOCK.read_bytes()).hexdigest()
    path.write_bytes(DEFAULT_LOCK.read_bytes() + b"\n")
    assert lock_sha256(path) != lock_sha256(DEFAULT_LOCK)


def _walk(data: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str]:
    """The mapping holding the last key of a dotted path; keys may contain dots (ubuntu-20.04-cloudimg)."""
    rest = dotted
    while True:
        key = next((k for k in sorted(data, key=len, reverse=True) if rest.startswith(k + ".")), None)
        if key is None:
            return data, rest
        data, rest = data[key], rest[len(key) + 1 :]


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    parent, last = _walk(data, dotted)
    parent[last] = value


def _del(data: dict[str, Any], dotted: str) -> None:
    parent, last = _walk(data, dotted)
    del parent[last]


CRIO = "artifacts.cri-o.arches.amd64"
CNI = "artifacts.cni-plugins.arches.amd64"


@pytest.mark.parametrize(
    ("dotted", "value", "expected"),
    [
        (f"{CNI}.sha256", "x", [f"{CNI}: unknown key 'sha256'"]),
        ("artifacts.cri-o.homepage", "x", ["artifacts.cri-o: unknown key 'homepage'"]),
        ("extra", 1, ["top level: unknown key 'extra'"]),
        (f"{CNI}.checksum", "sha256:abc", [CNI, "checksum", "'sha256:abc'", "sha256:<64"]),
        (f"{CNI}.checksum", "sha1:" + "a" * 40, [CNI, "checksum", "sha1:"]),
        (f"{CNI}.checksum", "sha256:" + "A" * 64, [CNI, "checksum", "AAAA"]),
        (f"{CNI}.checksum", "a" * 64, [CNI, "checksum"]),
        (f"{CNI}.checksum_source", "vendor", [CNI, "checksum_source", "'vendor'", "trust-on-first-use"]),
        (f"{CNI}.url", "http://example.org/cni.tgz", [CNI, "url", "'http://example.org/cni.tgz'", "https://"]),
        (f"{CNI}.url", "ftp://example.org/cni.tgz", [CNI, "url", "ftp://"]),
        (f"{CNI}.url", "https://example.org/a/../cni.tgz", [CNI, "url", ".."]),
        (f"{CNI}.url", "https://example.org/cni.tgz?x=1", [CNI, "url", "query"]),
        (f"{CRIO}.checksum_url", "http://example.org/SUMS", [CRIO, "checksum_url", "http://example.org/SUMS"]),
        (f"{CNI}.size", -1, [CNI, "size", "-1", ">= 0"]),
        (f"{CNI}.size", "12", [CNI, "size", "'12'"]),
        (f"{CNI}.size", True, [CNI, "size", "True"]),
        ("artifacts.ubuntu-20.04-cloudimg.version", 20.04, ["artifacts.ubuntu-20.04-cloudimg", "version", "20.04"]),
        ("lock_version", 2, ["lock_version", "2"]),
        (f"{CNI}.checksum", None, [CNI, "checksum is null", "'upstream'", "checksum_url"]),
        ("artifacts.weave-manifest.arches.amd64", {"url": "https://x.org/a", "checksum": None}, ["'all' alone"]),
        ("artifacts.Bad_Name", {"version": "1", "arches": {}}, ["artifact name", "'Bad_Name'"]),
        ("artifacts.cri-o.arches", {}, ["artifacts.cri-o", "arches"]),
    ],
)
def test_validation_errors_name_file_key_and_value(
    tmp_path: Path, dotted: str, value: Any, expected: list[str]
) -> None:
    data = copy.deepcopy(REAL)
    _set(data, dotted, value)
    path = write_lock(tmp_path, data)
    with pytest.raises(NodeimageError) as err:
        load_lock(path)
    text = str(err.value)
    assert str(path) in text
    for fragment in expected:
        assert fragment in text


@pytest.mark.parametrize(
    ("dotted", "expected"),
    [
        (f"{CNI}.url", f"{CNI}: missing required key 'url'"),
        (f"{CNI}.checksum", f"{CNI}: missing required key 'checksum'"),
        ("artifacts.cri-o.version", "artifacts.cri-o: missing required key 'version'"),
        ("lock_version", "missing required key 'lock_version'"),
    ],
)
def test_missing_required_keys(tmp_path: Path, dotted: str, expected: str) -> None:
    data = copy.deepcopy(REAL)
    _del(data, dotted)
    path = write_lock(tmp_path, data)
    with pytest.raises(NodeimageError, match=expected.replace(".", r"\.")):
        load_lock(path)


def test_optional_keys_may_be_left_out(tmp_path: Path) -> None:
    data = copy.deepcopy(REAL)
    _del(data, f"{CNI}.size")
    _del(data, f"{CNI}.checksum_note")
    _del(data, "artifacts.cni-plugins.description")
    lock = load_lock(write_lock(tmp_path, data))
    cni = lock.entry("cni-plugins", "amd64")
    assert cni.size is None and cni.checksum_note is None and cni.description is None


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("artifacts: [unclosed\n")
    with pytest.raises(NodeimageError, match="not valid YAML"):
        load_lock(bad)
    with pytest.raises(NodeimageError, match="the lock file .* does not exist"):
        load_lock(tmp_path / "nope.yaml")


def test_filename_decodes_the_url_path(tmp_path: Path) -> None:
    data = copy.deepcopy(REAL)
    _set(data, f"{CNI}.url", "https://example.org/dir/my%20file.tgz")
    assert load_lock(write_lock(tmp_path, data)).entry("cni-plugins", "amd64").filename == "my file.tgz"
