"""Cluster secrets: made once, 0600, kubeadm's formats, never reused for another cluster."""

from __future__ import annotations

import hashlib
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodeimage import secrets
from nodeimage.log import NodeimageError

PARAMS = secrets.ClusterParams(
    name="demo",
    kubernetes_version="v1.17.17",
    pod_cidr="10.244.0.0/16",
    service_cidr="10.96.0.0/12",
    control_plane_ip="192.168.100.10",
    prefix_len=24,
    endpoint="192.168.100.10:6443",
)


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_token_has_kubeadm_form_and_is_random() -> None:
    tokens = {secrets.new_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(secrets.TOKEN_RE.match(t) for t in tokens)


@pytest.mark.parametrize("bad", ["abcdef0123456789abcdef", "ABCDEF.0123456789abcdef", "abcde.0123456789abcdefg", ""])
def test_invalid_token_is_rejected_without_showing_it(bad: str) -> None:
    with pytest.raises(NodeimageError, match="invalid bootstrap token") as err:
        secrets.validate_token(bad)
    if bad:
        assert bad not in str(err.value)


def test_ca_is_a_10_year_ca_named_kubernetes() -> None:
    cert_pem, key_pem = secrets.new_ca()
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.subject.rfc4514_string() == "CN=kubernetes"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 3650
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]


def test_ca_hash_is_sha256_of_the_der_spki() -> None:
    cert_pem, _ = secrets.new_ca()
    spki = (
        x509.load_pem_x509_certificate(cert_pem)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert secrets.ca_cert_hash(cert_pem) == "sha256:" + hashlib.sha256(spki).hexdigest()
    assert len(secrets.ca_cert_hash(cert_pem)) == len("sha256:") + 64


def test_create_writes_private_files_once(tmp_path: Path) -> None:
    directory = tmp_path / "clusters" / "demo"
    made = secrets.create_cluster(directory, PARAMS)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert {p.name for p in files} == {"ca.crt", "ca.key", "token", "ca-cert-hash", "cluster.yaml"}
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    again = secrets.create_cluster(directory, PARAMS)
    assert again == made, "a second call must return the same secrets, not new ones"
    params, loaded = secrets.load_cluster(directory)
    assert params == PARAMS and loaded == made


def test_repr_hides_the_secrets(tmp_path: Path) -> None:
    made = secrets.create_cluster(tmp_path / "demo", PARAMS)
    shown = repr(made)
    assert made.token not in shown
    assert "PRIVATE KEY" not in shown


@pytest.mark.parametrize(
    "change",
    [{"name": "other"}, {"pod_cidr": "10.32.0.0/12"}, {"control_plane_ip": "192.168.100.20"}],
)
def test_refuses_to_overwrite_another_clusters_secrets(tmp_path: Path, change: dict) -> None:
    directory = tmp_path / "demo"
    secrets.create_cluster(directory, PARAMS)
    before = _tree(directory)
    with pytest.raises(NodeimageError, match="refusing to overwrite"):
        secrets.create_cluster(directory, replace(PARAMS, **change))
    assert _tree(directory) == before


def test_foreign_directory_is_not_taken_over(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    directory.mkdir()
    (directory / "notes.txt").write_text("mine")
    with pytest.raises(NodeimageError, match="not a nodeimage cluster directory"):
        secrets.create_cluster(directory, PARAMS)
    assert _tree(directory) == {"notes.txt": b"mine"}


def test_given_token_is_used_and_checked(tmp_path: Path) -> None:
    made = secrets.create_cluster(tmp_path / "a", PARAMS, token="abcdef.0123456789abcdef")
    assert made.token == "abcdef.0123456789abcdef"
    with pytest.raises(NodeimageError, match="invalid bootstrap token"):
        secrets.create_cluster(tmp_path / "b", PARAMS, token="nope")
    assert not (tmp_path / "b").exists()


def test_load_of_a_missing_cluster_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(NodeimageError, match="no cluster at") as err:
        secrets.load_cluster(tmp_path / "ghost")
    assert "control-plane" in str(err.value)


@pytest.mark.parametrize("bad", ["Demo", "-x", "a_b", "x" * 33, ""])
def test_cluster_name_is_validated(bad: str) -> None:
    with pytest.raises(NodeimageError, match="invalid cluster name"):
        secrets.cluster_dir(bad)


@pytest.mark.parametrize("bad", ["../x", "x/../../y", "/etc", "."])
def test_a_cluster_name_cannot_leave_the_state_directory(tmp_path: Path, bad: str) -> None:
    with pytest.raises(NodeimageError, match="invalid cluster name"):
        secrets.cluster_dir(bad, tmp_path)


def test_cluster_dir_is_absolute_and_refuses_a_symlink_out_of_the_state_directory(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "state").mkdir()
    assert secrets.cluster_dir("demo", tmp_path / "state" / ".." / "state") == tmp_path.resolve() / "state" / "demo"
    (tmp_path / "state" / "demo").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(NodeimageError, match="is a symbolic link"):
        secrets.cluster_dir("demo", tmp_path / "state")


def test_a_state_directory_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(NodeimageError, match=r"state directory .*/f is not a directory \(--state-dir\)"):
        secrets.cluster_dir("demo", tmp_path / "f")


@pytest.mark.parametrize("text", ["- a\n- b\n", "name: [unclosed\n", "\xff"])
def test_a_corrupt_cluster_record_names_the_file_and_how_to_recover(tmp_path: Path, text: str) -> None:
    directory = tmp_path / "demo"
    secrets.create_cluster(directory, PARAMS)
    (directory / "cluster.yaml").write_bytes(text.encode("latin-1"))
    with pytest.raises(NodeimageError, match="cluster record .*cluster.yaml is unreadable") as err:
        secrets.load_cluster(directory)
    assert "invoke down --cluster demo --purge" in (err.value.hint or "")
