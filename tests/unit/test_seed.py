"""Seed rendering: kubeadm v1beta2 documents, cloud-config shape, network-config, bad input."""

from __future__ import annotations

import functools
import json
import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

from nodeimage import secrets, seed, seedrender
from nodeimage.log import NodeimageError

K8S = {"kubernetes_version": "v1.17.17", "pod_cidr": "10.244.0.0/16", "service_cidr": "10.96.0.0/12"}

# Fields of kubeadm.k8s.io/v1beta2 (kubeadm 1.15-1.21), from the API's Go types: nothing else may appear.
# kubeadm 1.17's v1beta2 fields, as the kubeadm stand-in holds them (tests/standins/programs/kubeadm.py, read
# from cmd/kubeadm/app/apis/kubeadm/v1beta2/types.go): one table for both.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "standins" / "programs"))
import kubeadm as standin_kubeadm  # noqa: E402

V1BETA2 = standin_kubeadm.schema(v4=False)


@functools.cache
def _ca() -> tuple[bytes, bytes]:
    return secrets.new_ca()


@pytest.fixture(autouse=True)
def _one_ca(monkeypatch: pytest.MonkeyPatch) -> None:
    """One CA for every cluster here: a 2048-bit RSA key per seed was most of this file's run time
    (the CA itself is tested in test_secrets.py)."""
    ca = _ca()
    monkeypatch.setattr(secrets, "new_ca", lambda now=None: ca)


def _seed(tmp_path: Path, role: str = "control-plane", name: str = "cp", ip: str = "192.168.100.10", **kw) -> Path:
    node = seed.NodeSpec(role=role, name=name, ip=ip, **{k: kw.pop(k) for k in list(kw) if k.endswith("nic")})
    return seed.seed_node(cluster=kw.pop("cluster", "demo"), node=node, state_dir=tmp_path / "state", **{**K8S, **kw})


def _cloud_config(iso: Path) -> dict:
    text = (iso.parent / "user-data").read_text()
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def _files(cfg: dict) -> dict[str, dict]:
    return {f["path"]: f for f in cfg["write_files"]}


def _kubeadm(cfg: dict, path: str = seedrender.KUBEADM_CONFIG) -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(_files(cfg)[path]["content"])}


def _check_fields(doc: dict, kind: str) -> None:
    bad = standin_kubeadm.unknown_fields(doc, V1BETA2[kind])
    assert not bad, f"{kind} has fields outside v1beta2: {bad}"


def test_control_plane_seed(tmp_path: Path) -> None:
    iso = _seed(tmp_path)
    cfg = _cloud_config(iso)
    files = _files(cfg)
    # the CA is staged under /etc/nodeimage/pki: nodeimage-bootstrap copies it into /etc/kubernetes/pki before
    # each kubeadm init (kubeadm reset, before a retry, empties that directory)
    assert files["/etc/nodeimage/pki/ca.key"]["permissions"] == "0600"
    assert files["/etc/nodeimage/pki/ca.crt"]["permissions"] == "0644"
    assert "BEGIN RSA PRIVATE KEY" in files["/etc/nodeimage/pki/ca.key"]["content"]
    assert files[seedrender.KUBEADM_CONFIG]["permissions"] == "0600"
    assert seedrender.KUBEADM_CONFIG.startswith("/etc/")  # survives a reboot, unlike /run
    assert cfg["runcmd"] == [["systemctl", "start", "nodeimage-bootstrap.service"]]
    docs = _kubeadm(cfg)
    init, cluster = docs["InitConfiguration"], docs["ClusterConfiguration"]
    token = (tmp_path / "state" / "demo" / "token").read_text().strip()
    assert init["bootstrapTokens"][0]["token"] == token
    assert init["nodeRegistration"]["criSocket"] == "/var/run/crio/crio.sock"
    assert init["nodeRegistration"]["kubeletExtraArgs"] == {"node-ip": "192.168.100.10"}
    assert init["localAPIEndpoint"]["advertiseAddress"] == "192.168.100.10"
    assert cluster["kubernetesVersion"] == "v1.17.17"
    assert cluster["imageRepository"] == "registry.k8s.io"  # kubeadm 1.17's default, k8s.gcr.io, is frozen
    assert cluster["networking"] == {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12"}
    assert cluster["controlPlaneEndpoint"] == "192.168.100.10:6443"
    assert cluster["apiServer"] == {"certSANs": ["127.0.0.1"]}
    assert docs["KubeletConfiguration"] == {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
    }
    for kind in ("InitConfiguration", "ClusterConfiguration"):
        assert docs[kind]["apiVersion"] == "kubeadm.k8s.io/v1beta2"
        _check_fields(docs[kind], kind)
    kata = _kubeadm(cfg, seedrender.KUBEADM_CONFIG_KATA)["InitConfiguration"]
    assert kata["nodeRegistration"]["kubeletExtraArgs"]["node-labels"] == "katacontainers.io/kata-runtime=true"
    params = json.loads(files[seedrender.BOOTSTRAP_PARAMS]["content"])
    assert params["pod_cidr"] == "10.244.0.0/16" and params["role"] == "control-plane"
    assert token not in files[seedrender.BOOTSTRAP_PARAMS]["content"]
    meta = yaml.safe_load((iso.parent / "meta-data").read_text())
    assert meta == {"instance-id": "nodeimage-demo-cp", "local-hostname": "cp"}


def test_worker_seed_joins_with_token_and_ca_hash_and_has_no_ca_key(tmp_path: Path) -> None:
    _seed(tmp_path)
    iso = _seed(tmp_path, role="worker", name="worker-1", ip="192.168.100.11")
    cfg = _cloud_config(iso)
    files = _files(cfg)
    assert not any("ca.key" in p for p in files)
    assert "PRIVATE KEY" not in (iso.parent / "user-data").read_text()
    join = _kubeadm(cfg)["JoinConfiguration"]
    _check_fields(join, "JoinConfiguration")
    bt = join["discovery"]["bootstrapToken"]
    state = tmp_path / "state" / "demo"
    assert bt["token"] == (state / "token").read_text().strip()
    assert bt["caCertHashes"] == [(state / "ca-cert-hash").read_text().strip()]
    assert bt["apiServerEndpoint"] == "192.168.100.10:6443"
    assert "unsafeSkipCAVerification" not in bt
    assert join["nodeRegistration"]["name"] == "worker-1"
    assert cfg["runcmd"] == [["systemctl", "start", "nodeimage-bootstrap.service"]]


def test_seed_files_are_private(tmp_path: Path) -> None:
    iso = _seed(tmp_path)
    for name in ("user-data", "meta-data", "network-config", "seed.iso"):
        assert stat.S_IMODE((iso.parent / name).stat().st_mode) == 0o600, name


def test_network_config_by_mac_and_by_name(tmp_path: Path) -> None:
    iso = _seed(tmp_path, nat_nic="52:54:00:00:00:01", private_nic="52:54:00:00:00:02")
    net = yaml.safe_load((iso.parent / "network-config").read_text())
    assert net["version"] == 2
    assert net["ethernets"]["nat0"] == {"match": {"macaddress": "52:54:00:00:00:01"}, "set-name": "nat0", "dhcp4": True}
    assert net["ethernets"]["cluster0"]["addresses"] == ["192.168.100.10/24"]
    iso = _seed(tmp_path / "b")
    net = yaml.safe_load((iso.parent / "network-config").read_text())
    assert net["ethernets"] == {
        "ens3": {"dhcp4": True},
        "ens4": {"dhcp4": False, "addresses": ["192.168.100.10/24"]},
    }


def test_rerendering_the_control_plane_keeps_the_secrets(tmp_path: Path) -> None:
    _seed(tmp_path)
    ca = (tmp_path / "state" / "demo" / "pki" / "ca.key").read_bytes()
    _seed(tmp_path)
    assert (tmp_path / "state" / "demo" / "pki" / "ca.key").read_bytes() == ca


BAD = [
    ({"pod_cidr": "10.244.0.0/33"}, "invalid pod CIDR '10.244.0.0/33'"),
    ({"pod_cidr": "10.244.0.1/16"}, "invalid pod CIDR"),
    ({"service_cidr": "banana"}, "invalid service CIDR 'banana'"),
    ({"pod_cidr": "10.96.0.0/16"}, "overlaps service CIDR"),
    ({"ip": "192.168.100.300"}, "invalid node IP '192.168.100.300'|invalid control-plane IP '192.168.100.300'"),
    ({"ip": "192.168.100.0"}, "network or broadcast address"),
    ({"ip": "10.244.1.5"}, "overlaps the node network"),
    ({"name": "Bad_Host"}, "invalid node name 'Bad_Host'"),
    ({"name": "x" * 64}, "invalid node name"),
    ({"kubernetes_version": "1.17"}, "invalid Kubernetes version '1.17'"),
    ({"kubernetes_version": "v1.25.0"}, "no stack for Kubernetes 'v1.25.0'"),
    ({"endpoint": "192.168.100.10"}, "invalid API server endpoint '192.168.100.10'"),
    ({"endpoint": "192.168.100.10:99999"}, "invalid API server endpoint"),
    ({"endpoint": "bad host:6443"}, "invalid API server endpoint"),
    ({"token": "not-a-token"}, "invalid bootstrap token"),
    ({"role": "master"}, "invalid role 'master'"),
    ({"cluster": "Demo!"}, "invalid cluster name 'Demo!'"),
    ({"private_nic": "ens3"}, "both 'ens3'"),
]


@pytest.mark.parametrize(("kw", "message"), BAD, ids=[m.split("'")[0].strip() + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_input_is_one_clear_error_and_writes_nothing(tmp_path: Path, kw: dict, message: str) -> None:
    with pytest.raises(NodeimageError, match=message.replace(".", r"\.").replace("(", r"\(")):
        _seed(tmp_path, **kw)
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").rglob("*"))


def test_worker_before_the_cluster_exists(tmp_path: Path) -> None:
    with pytest.raises(NodeimageError, match="cluster 'demo' does not exist yet"):
        _seed(tmp_path, role="worker", name="w1", ip="192.168.100.11")
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"ip": "192.168.200.11"}, "not in the cluster's node network 192.168.100.0/24"),
        ({"ip": "192.168.100.10"}, "is the control plane's address"),
        ({"control_plane_ip": "192.168.100.99"}, "differs from cluster 'demo'"),
    ],
)
def test_bad_worker_input_writes_nothing(tmp_path: Path, kw: dict, message: str) -> None:
    _seed(tmp_path)
    before = sorted(p for p in (tmp_path / "state").rglob("*"))
    with pytest.raises(NodeimageError, match=message.replace(".", r"\.")):
        _seed(tmp_path, role="worker", name="w1", **{"ip": "192.168.100.11", **kw})
    assert sorted(p for p in (tmp_path / "state").rglob("*")) == before


def test_control_plane_with_other_params_does_not_overwrite(tmp_path: Path) -> None:
    _seed(tmp_path)
    key = (tmp_path / "state" / "demo" / "pki" / "ca.key").read_bytes()
    with pytest.raises(NodeimageError, match="refusing to overwrite"):
        _seed(tmp_path, pod_cidr="10.32.0.0/12")
    assert (tmp_path / "state" / "demo" / "pki" / "ca.key").read_bytes() == key


def test_no_secret_in_the_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _seed(tmp_path)
    _seed(tmp_path, role="worker", name="w1", ip="192.168.100.11")
    token = (tmp_path / "state" / "demo" / "token").read_text().strip()
    out = capsys.readouterr()
    assert token not in out.out + out.err
    assert "PRIVATE" not in out.out + out.err


def test_worker_with_a_later_token(tmp_path: Path) -> None:
    _seed(tmp_path)
    iso = _seed(tmp_path, role="worker", name="w1", ip="192.168.100.11", token="zyxwvu.0123456789abcdef")
    join = _kubeadm(_cloud_config(iso))["JoinConfiguration"]
    assert join["discovery"]["bootstrapToken"]["token"] == "zyxwvu.0123456789abcdef"
    assert (tmp_path / "state" / "demo" / "token").read_text().strip() != "zyxwvu.0123456789abcdef"


# --- seeds cannot collide ---------------------------------------------------------------------


def _tree(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every path under ``root`` with its mode and (for files) its bytes: to prove nothing changed."""
    return {
        str(p.relative_to(root)): (p.stat().st_mode, p.read_bytes() if p.is_file() else b"")
        for p in sorted(root.rglob("*"))
    }


COLLISIONS = [
    ({"role": "worker", "name": "cp", "ip": "192.168.100.12"},
     "node name 'cp' is already used in cluster 'demo' by the control-plane at 192.168.100.10"),
    ({"role": "worker", "name": "w2", "ip": "192.168.100.11"},
     "address 192.168.100.11 is already used in cluster 'demo' by worker 'w1'"),
    ({"role": "worker", "name": "w1", "ip": "192.168.100.12"},
     "node name 'w1' is already used in cluster 'demo' by the worker at 192.168.100.11"),
    ({"role": "control-plane", "name": "cp2", "ip": "192.168.100.10"},
     "cluster 'demo' already has a control plane, 'cp' at 192.168.100.10"),
    ({"role": "control-plane", "name": "cp2", "ip": "192.168.100.20"},
     "cluster 'demo' already has a control plane, 'cp' at 192.168.100.10"),
    ({"role": "control-plane", "name": "w1", "ip": "192.168.100.10"},
     "already has a control plane"),
    ({"role": "worker", "name": "w2", "ip": "192.168.100.10"},
     "worker IP 192.168.100.10 is the control plane's address"),
    ({"role": "worker", "name": "w2", "ip": "192.168.100.12", "pod_cidr": "10.32.0.0/12", "pod_cidr_given": True},
     "--pod-cidr 10.32.0.0/12 cannot apply to a worker: the pod CIDR of cluster 'demo' is 10.244.0.0/16"),
    ({"role": "worker", "name": "w2", "ip": "192.168.100.12", "kubernetes_version": "v1.17.16", "profile": "old"},
     "profile 'old' is Kubernetes v1.17.16, but the control plane of cluster 'demo' was seeded with v1.17.17"),
]  # fmt: skip


@pytest.mark.parametrize(("kw", "message"), COLLISIONS, ids=[f"collision{i}" for i in range(len(COLLISIONS))])
def test_colliding_seed_is_one_error_and_writes_nothing(tmp_path: Path, kw: dict, message: str) -> None:
    _seed(tmp_path)
    _seed(tmp_path, role="worker", name="w1", ip="192.168.100.11")
    before = _tree(tmp_path)
    with pytest.raises(NodeimageError, match=message.replace(".", r"\.").replace("(", r"\(")):
        _seed(tmp_path, **kw)
    assert _tree(tmp_path) == before


def test_a_collision_with_a_seed_written_elsewhere_is_caught(tmp_path: Path) -> None:
    """--out puts the seed outside the cluster, but the cluster still records the node."""
    _seed(tmp_path)
    _seed(tmp_path, role="worker", name="w1", ip="192.168.100.11", out_dir=tmp_path / "out")
    record = json.loads((tmp_path / "state" / "demo" / "nodes" / "w1" / "node.json").read_text())
    assert record["seed"] == str(tmp_path / "out" / "demo-w1")
    with pytest.raises(NodeimageError, match="address 192.168.100.11 is already used"):
        _seed(tmp_path, role="worker", name="w2", ip="192.168.100.11")


def test_a_seed_from_before_node_records_still_counts(tmp_path: Path) -> None:
    _seed(tmp_path)
    (tmp_path / "state" / "demo" / "nodes" / "cp" / "node.json").unlink()
    with pytest.raises(NodeimageError, match="already has a control plane, 'cp'"):
        _seed(tmp_path, name="cp2")


def test_the_same_node_again_is_re_rendered(tmp_path: Path) -> None:
    _seed(tmp_path)
    _seed(tmp_path, role="worker", name="w1", ip="192.168.100.11")
    first = (tmp_path / "state" / "demo" / "nodes" / "w1" / "user-data").read_text()
    iso = _seed(tmp_path, role="worker", name="w1", ip="192.168.100.11", token="zyxwvu.0123456789abcdef")
    assert (iso.parent / "user-data").read_text() != first
    assert sorted(p.name for p in iso.parent.iterdir()) == ["meta-data", "network-config", "node.json", "seed.iso",
                                                            "user-data"]  # fmt: skip
    assert not [p for p in iso.parent.parent.iterdir() if p.name.startswith(".")], "a staging directory was left"


def test_a_worker_may_repeat_the_clusters_pod_cidr_and_take_another_profile_of_the_same_version(
    tmp_path: Path,
) -> None:
    _seed(tmp_path)
    _seed(tmp_path, role="worker", name="w1", ip="192.168.100.11", pod_cidr="10.244.0.0/16", pod_cidr_given=True,
          service_cidr="10.100.0.0/16", profile="k8s-1.17-debian12")  # fmt: skip
    # the profile's default pod CIDR, not asked for: a worker takes the cluster's without a word
    _seed(tmp_path, role="worker", name="w2", ip="192.168.100.12", pod_cidr="10.32.0.0/12")


# --- --out ------------------------------------------------------------------------------------


def test_out_never_changes_a_directory_it_did_not_make(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    iso = _seed(tmp_path, out_dir=shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert iso == shared / "demo-cp" / "seed.iso"
    assert stat.S_IMODE(iso.parent.stat().st_mode) == 0o700
    assert _seed(tmp_path, out_dir=shared) == iso  # the same node again: replaced in place
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert (tmp_path / "state" / "demo" / "nodes" / "cp" / "node.json").is_file()


def test_out_that_does_not_exist_is_made_private(tmp_path: Path) -> None:
    iso = _seed(tmp_path, out_dir=tmp_path / "new" / "seeds")
    assert stat.S_IMODE((tmp_path / "new" / "seeds").stat().st_mode) == 0o700
    assert iso.parent == tmp_path / "new" / "seeds" / "demo-cp"


def test_out_refuses_a_directory_it_did_not_write(tmp_path: Path) -> None:
    mine = tmp_path / "out" / "demo-cp"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(NodeimageError, match="exists and is not the seed of node 'cp'"):
        _seed(tmp_path, out_dir=tmp_path / "out")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert not (tmp_path / "state").exists()


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(NodeimageError, match="is not a directory"):
        _seed(tmp_path, out_dir=tmp_path / "f")
    assert not (tmp_path / "state").exists()


def test_a_failed_first_seed_leaves_no_cluster_and_no_partial_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(path: Path, **kwargs: object) -> None:
        Path(path).write_bytes(b"half an iso")
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(seed, "write_seed_iso", full)
    with pytest.raises(NodeimageError, match="cannot write cluster files in .* no space left on the filesystem"):
        _seed(tmp_path)
    assert not (tmp_path / "state").exists()
    with pytest.raises(NodeimageError, match=r"cannot write the seed to .*demo-cp \(--out\): no space left"):
        _seed(tmp_path, out_dir=tmp_path / "out")
    assert not (tmp_path / "state").exists() and list((tmp_path / "out").iterdir()) == []


def test_a_failed_worker_seed_keeps_the_previous_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(tmp_path)
    _seed(tmp_path, role="worker", name="w1", ip="192.168.100.11")
    before = _tree(tmp_path)

    def broken(path: Path, **kwargs: object) -> None:
        raise NodeimageError("command failed with exit code 5: xorriso ...")

    monkeypatch.setattr(seed, "write_seed_iso", broken)
    with pytest.raises(NodeimageError, match="xorriso"):  # room on the disk: xorriso's own error, unchanged
        _seed(tmp_path, role="worker", name="w1", ip="192.168.100.11")
    assert _tree(tmp_path) == before


# --- SSH public keys --------------------------------------------------------------------------


def _ssh_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _key_line(kind: str, *fields: bytes, prefix: str | None = None) -> str:
    import base64

    blob = _ssh_string(kind.encode()) + b"".join(_ssh_string(f) for f in fields)
    return f"{prefix or kind} {base64.b64encode(blob).decode()} me@host"


def _openssh_public(key: object) -> str:
    from cryptography.hazmat.primitives import serialization

    return (
        key.public_key()
        .public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        .decode()
        + " me@host"
    )


def _valid_keys() -> dict[str, str]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    rsa_line = _openssh_public(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    point = b"\x04" + b"\x01" * 64
    return {
        "ssh-ed25519": _openssh_public(ed25519.Ed25519PrivateKey.generate()),
        "ecdsa-sha2-nistp256": _openssh_public(ec.generate_private_key(ec.SECP256R1())),
        "ecdsa-sha2-nistp384": _openssh_public(ec.generate_private_key(ec.SECP384R1())),
        "ecdsa-sha2-nistp521": _openssh_public(ec.generate_private_key(ec.SECP521R1())),
        "ssh-rsa": rsa_line,
        "rsa-sha2-512": "rsa-sha2-512 " + rsa_line.split(" ", 1)[1],
        "sk-ssh-ed25519@openssh.com": _key_line("sk-ssh-ed25519@openssh.com", b"\x02" * 32, b"ssh:"),
        "sk-ecdsa-sha2-nistp256@openssh.com": _key_line(
            "sk-ecdsa-sha2-nistp256@openssh.com", b"nistp256", point, b"ssh:"
        ),  # fmt: skip
    }


VALID_KEYS = _valid_keys()


@pytest.mark.parametrize("kind", sorted(VALID_KEYS))
def test_every_openssh_public_key_type_is_accepted(tmp_path: Path, kind: str) -> None:
    from nodeimage.nodespec import read_ssh_public_key

    path = tmp_path / "id.pub"
    path.write_text(VALID_KEYS[kind] + "\n")
    assert read_ssh_public_key(path) == VALID_KEYS[kind]
    node = seed.NodeSpec(role="control-plane", name="cp", ip="192.168.100.10", ssh_public_key=VALID_KEYS[kind])
    iso = seed.seed_node(cluster="demo", node=node, state_dir=tmp_path / "state", **K8S)
    assert _cloud_config(iso)["users"][0]["ssh_authorized_keys"] == [VALID_KEYS[kind]]


_ED = VALID_KEYS["ssh-ed25519"].split()[1]
_SMALL_RSA = _key_line("ssh-rsa", b"\x01\x00\x01", b"\x00" + b"\xff" * 64)
BAD_KEYS = [
    ("ssh-dss AAAAB3NzaC1kc3MAAACBAP me", "unknown key type 'ssh-dss'"),
    (f"ecdsa-sha2-nistp256 {_ED} me", "the line says 'ecdsa-sha2-nistp256' but the key data is of type 'ssh-ed25519'"),
    (f"ssh-ed25519 {_ED[:-8]} me", "not a valid ssh-ed25519 public key"),
    ("ssh-ed25519 not*base64 me", "the key data is not base64"),
    ("ssh-ed25519", "no key data after 'ssh-ed25519'"),
    (_key_line("ssh-ed25519", b"\x01" * 31), "one 32-byte public key"),
    (_key_line("ecdsa-sha2-nistp384", b"nistp256", b"\x04" + b"\x01" * 64), "names its curve"),
    (_key_line("ecdsa-sha2-nistp256", b"nistp256", b"\x04" + b"\x01" * 63), "not 65 bytes"),
    (_key_line("ssh-ed25519", b"\x01" * 32, b"extra"), "holds 2 fields after the type"),
    (_key_line("sk-ssh-ed25519@openssh.com", b"\x02" * 32), "application string is missing"),
    (_SMALL_RSA, "the RSA modulus has 512 bits"),
    (VALID_KEYS["ssh-ed25519"] + "\n" + VALID_KEYS["ssh-rsa"], "holds 2 key lines"),
    ("", "holds 0 key lines"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
     "is a private key"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD_KEYS, ids=[f"badkey{i}" for i in range(len(BAD_KEYS))])
def test_a_bad_key_names_the_file_and_what_was_expected(tmp_path: Path, text: str, message: str) -> None:
    from nodeimage.nodespec import read_ssh_public_key

    path = tmp_path / "id.pub"
    path.write_text(text)
    with pytest.raises(NodeimageError, match=message.replace("(", r"\(")) as err:
        read_ssh_public_key(path)
    assert str(path) in err.value.message
    assert "PRIVATE" not in err.value.message.replace("private key", "")
    if "private" not in message:
        hint = err.value.hint or ""
        assert "ssh-ed25519" in hint and "sk-ecdsa-sha2-nistp256@openssh.com" in hint


# --- the files --ssh-key and --token-file name ------------------------------------------------


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "fifo")
    return tmp_path / "fifo"


USER_FILES = [
    (lambda t: t / "missing.pub", "does not exist"),
    (lambda t: t, "is a directory, not a file"),
    (_fifo, "is not a regular file"),
    (lambda t: Path("/proc/self/mem"), "cannot read .* /proc/self/mem .*Input/output error"),
]


@pytest.mark.parametrize("reader", ["read_ssh_public_key", "read_token_file"])
@pytest.mark.parametrize(("make", "message"), USER_FILES, ids=["missing", "directory", "fifo", "unreadable"])
def test_a_bad_user_file_is_one_error_naming_it(tmp_path: Path, reader: str, make: object, message: str) -> None:
    from nodeimage import nodespec

    path = make(tmp_path)  # type: ignore[operator]
    option = "--ssh-key" if "ssh" in reader else "--token-file"
    with pytest.raises(NodeimageError, match=message) as err:
        getattr(nodespec, reader)(path)
    assert str(path) in err.value.message and option in str(err.value)


def test_binary_and_huge_files_are_refused(tmp_path: Path) -> None:
    from nodeimage.nodespec import read_ssh_public_key, read_token_file

    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(NodeimageError, match="is not text"):
        read_ssh_public_key(tmp_path / "bin")
    (tmp_path / "big").write_bytes(b"a" * 5000)
    with pytest.raises(NodeimageError, match="too large"):
        read_token_file(tmp_path / "big")


def test_token_file_is_read_and_a_bad_token_is_never_shown(tmp_path: Path) -> None:
    from nodeimage.nodespec import read_token_file

    path = tmp_path / "token"
    path.write_text("abcdef.0123456789abcdef\n")
    assert read_token_file(path) == "abcdef.0123456789abcdef"
    path.write_text("ABCDEF.0123456789ABCDEF\n")
    with pytest.raises(NodeimageError, match="holds no valid token") as err:
        read_token_file(path)
    assert "ABCDEF" not in str(err.value)


def test_a_node_spec_with_an_unknown_key_type_is_refused(tmp_path: Path) -> None:
    node = seed.NodeSpec(role="control-plane", name="cp", ip="192.168.100.10", ssh_public_key="ssh-dss AAAAB3Nz me")
    with pytest.raises(NodeimageError, match="unknown key type 'ssh-dss'"):
        seed.seed_node(cluster="demo", node=node, state_dir=tmp_path / "state", **K8S)
    assert not (tmp_path / "state").exists()
