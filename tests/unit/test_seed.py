"""Seed rendering: kubeadm v1beta2 documents, cloud-config shape, network-config, bad input."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest
import yaml

from nodeimage import seed
from nodeimage.log import NodeimageError

K8S = {"kubernetes_version": "v1.17.17", "pod_cidr": "10.244.0.0/16", "service_cidr": "10.96.0.0/12"}

# Fields of kubeadm.k8s.io/v1beta2 (kubeadm 1.15-1.21), from the API's Go types: nothing else may appear.
# kubeadm 1.17's v1beta2 fields, as the kubeadm stand-in holds them (tests/standins/programs/kubeadm.py, read
# from cmd/kubeadm/app/apis/kubeadm/v1beta2/types.go): one table for both.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "standins" / "programs"))
import kubeadm as standin_kubeadm  # noqa: E402

V1BETA2 = standin_kubeadm.schema(v4=False)


def _seed(tmp_path: Path, role: str = "control-plane", name: str = "cp", ip: str = "192.168.100.10", **kw) -> Path:
    node = seed.NodeSpec(role=role, name=name, ip=ip, **{k: kw.pop(k) for k in list(kw) if k.endswith("nic")})
    return seed.seed_node(cluster=kw.pop("cluster", "demo"), node=node, state_dir=tmp_path / "state", **{**K8S, **kw})


def _cloud_config(iso: Path) -> dict:
    text = (iso.parent / "user-data").read_text()
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def _files(cfg: dict) -> dict[str, dict]:
    return {f["path"]: f for f in cfg["write_files"]}


def _kubeadm(cfg: dict, path: str = seed.KUBEADM_CONFIG) -> dict[str, dict]:
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
    assert files[seed.KUBEADM_CONFIG]["permissions"] == "0600"
    assert seed.KUBEADM_CONFIG.startswith("/etc/")  # survives a reboot, unlike /run
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
    kata = _kubeadm(cfg, seed.KUBEADM_CONFIG_KATA)["InitConfiguration"]
    assert kata["nodeRegistration"]["kubeletExtraArgs"]["node-labels"] == "katacontainers.io/kata-runtime=true"
    params = json.loads(files[seed.BOOTSTRAP_PARAMS]["content"])
    assert params["pod_cidr"] == "10.244.0.0/16" and params["role"] == "control-plane"
    assert token not in files[seed.BOOTSTRAP_PARAMS]["content"]
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
