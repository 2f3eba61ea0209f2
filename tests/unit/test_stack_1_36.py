"""The current stack (k8s-1.36): its kubeadm documents, CRI-O drop-ins, Kata handler, images and profiles.

The kubeadm documents are held to the v1beta4 schema of the stand-in kubeadm (read from kubeadm's
v1beta4/types.go; tests/standins/programs/kubeadm.py), the way tests/unit/test_seed.py holds the classic
stack's to v1beta2; the CRI-O drop-ins to the stand-in CRI-O's 1.36 keys (pkg/config/config.go toml tags).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from nodeimage import seed, seedrender, stacks
from nodeimage.config import make_config
from nodeimage.fetch import fetch
from nodeimage.lock import load_lock
from nodeimage.log import NodeimageError
from nodeimage.profiles import load_profile, parse_profile
from nodeimage.stacks import CRI_ENDPOINT, Settings
from nodeimage.stage import write_stage

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "standins" / "programs"))
sys.path.insert(0, str(REPO / "tests" / "standins"))
import kubeadm as standin_kubeadm  # noqa: E402
import make_standins as ms  # noqa: E402

V1BETA4 = standin_kubeadm.schema_for("kubeadm.k8s.io/v1beta4")
K8S = {"kubernetes_version": "v1.36.4", "pod_cidr": "10.244.0.0/16", "service_cidr": "10.96.0.0/12"}
STACK = stacks.get("k8s-1.36")
SETTINGS = Settings(
    "v1.36.4", "registry.k8s.io", "amd64",
    {"kubelet": "v1.36.4", "kubeadm": "v1.36.4", "kubectl": "v1.36.4", "cri-o-bundle": "v1.36.3",
     "kata-containers-static": "3.32.0", "cni-plugins-1": "v1.9.1", "crictl-1.36": "v1.36.0"},
)  # fmt: skip


def _seed(tmp_path: Path, role: str = "control-plane", name: str = "cp", ip: str = "192.168.100.10") -> dict:
    if role == "worker":
        _seed(tmp_path)
    iso = seed.seed_node(cluster="c36", node=seed.NodeSpec(role=role, name=name, ip=ip), state_dir=tmp_path, **K8S)
    return yaml.safe_load((iso.parent / "user-data").read_text())


def _kubeadm(cfg: dict, path: str = seedrender.KUBEADM_CONFIG) -> dict[str, dict]:
    files = {f["path"]: f for f in cfg["write_files"]}
    return {d["kind"]: d for d in yaml.safe_load_all(files[path]["content"])}


def _args(registration: dict) -> dict[str, str]:
    return {a["name"]: a["value"] for a in registration["kubeletExtraArgs"]}


# --- kubeadm documents: only v1beta4 fields ------------------------------------------------------------------


@pytest.mark.parametrize("path", [seedrender.KUBEADM_CONFIG, seedrender.KUBEADM_CONFIG_KATA])
def test_control_plane_documents_use_only_v1beta4_fields(tmp_path: Path, path: str) -> None:
    docs = _kubeadm(_seed(tmp_path), path)
    assert set(docs) == {"InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"}
    for kind in ("InitConfiguration", "ClusterConfiguration"):
        assert docs[kind]["apiVersion"] == "kubeadm.k8s.io/v1beta4"
        assert standin_kubeadm.unknown_fields(docs[kind], V1BETA4[kind]) == [], kind
    registration = docs["InitConfiguration"]["nodeRegistration"]
    assert registration["criSocket"] == CRI_ENDPOINT  # a URL: kubeadm warns about a bare path
    assert _args(registration)["node-ip"] == "192.168.100.10"
    assert ("node-labels" in _args(registration)) == (path == seedrender.KUBEADM_CONFIG_KATA)
    cluster = docs["ClusterConfiguration"]
    assert cluster["kubernetesVersion"] == "v1.36.4" and cluster["imageRepository"] == "registry.k8s.io"
    assert cluster["networking"] == {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12"}


def test_worker_documents_use_only_v1beta4_fields(tmp_path: Path) -> None:
    join = _kubeadm(_seed(tmp_path, "worker", "w1", "192.168.100.11"))["JoinConfiguration"]
    assert join["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert standin_kubeadm.unknown_fields(join, V1BETA4["JoinConfiguration"]) == []
    assert "timeout" not in join["discovery"]  # moved to timeouts in v1beta4
    assert join["timeouts"] == {"discovery": "10m0s"}
    assert join["discovery"]["bootstrapToken"]["caCertHashes"][0].startswith("sha256:")


def test_the_schema_check_can_fail() -> None:
    """The v1beta2 forms the classic stack writes are not v1beta4."""
    registration = {"name": "cp", "criSocket": "/var/run/crio/crio.sock", "kubeletExtraArgs": {"node-ip": "x"}}
    doc = {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "JoinConfiguration", "nodeRegistration": registration,
           "discovery": {"bootstrapToken": {"token": "t"}, "timeout": "5m0s"}}  # fmt: skip
    assert standin_kubeadm.unknown_fields(doc, V1BETA4["JoinConfiguration"]) == [
        "nodeRegistration.kubeletExtraArgs (expected a list)", "discovery.timeout"]  # fmt: skip


def test_kubelet_configuration_carries_the_driver_and_the_endpoint(tmp_path: Path) -> None:
    """kubernetes/kubelet@v0.36.3 config/v1beta1/types.go: cgroupDriver, containerRuntimeEndpoint (no flags)."""
    kubelet = _kubeadm(_seed(tmp_path))["KubeletConfiguration"]
    assert kubelet == {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", "cgroupDriver": "systemd",
        "containerRuntimeEndpoint": "unix:///var/run/crio/crio.sock",
    }  # fmt: skip


def test_seed_for_a_1_36_version_takes_the_current_stack() -> None:
    assert stacks.for_version("v1.36.4") is STACK
    assert stacks.for_version("v1.17.17").name == "k8s-1.17"


# --- the image's files ------------------------------------------------------------------------------------------


def _files() -> dict[str, str]:
    return {f.path: f.content for f in STACK.files(SETTINGS)}


def test_crio_is_configured_through_drop_ins_only() -> None:
    files = _files()
    assert "/etc/crio/crio.conf" not in files
    dropins = sorted(p for p in files if p.startswith("/etc/crio/crio.conf.d/"))
    # after the bundle's 10-crio.conf, which the stack installs from the bundle (PKG install script)
    assert dropins == ["/etc/crio/crio.conf.d/20-nodeimage.conf", "/etc/crio/crio.conf.d/50-nodeimage-kata.conf"]
    installed = {op.dest: op for op in STACK.installs(SETTINGS)}
    assert installed["/etc/crio/crio.conf.d/10-crio.conf"].member == "cri-o/etc/10-crio.conf"


def test_crio_drop_ins_use_only_keys_crio_1_36_has() -> None:
    """The stand-in CRI-O's 1.36 tables (toml tags of cri-o v1.36.3 pkg/config/config.go), which it refuses
    anything outside of."""
    sys.path.insert(0, str(REPO / "tests" / "standins" / "programs"))
    import crio as standin_crio

    known = {k: set(v.split()) for k, v in standin_crio.KEYS_36.items()}
    for path, text in _files().items():
        if path.startswith("/etc/crio/crio.conf.d/"):
            standin_crio._check_keys(tomllib.loads(text), path, known)  # raises on an unknown key


def test_crio_settings_the_node_needs() -> None:
    conf = tomllib.loads(_files()["/etc/crio/crio.conf.d/20-nodeimage.conf"])["crio"]
    assert conf["runtime"]["cgroup_manager"] == "systemd" and conf["runtime"]["conmon_cgroup"] == "pod"
    assert conf["image"]["pause_image"] == "registry.k8s.io/pause:3.10.2"
    assert conf["storage_driver"] == "overlay" and conf["root"] == "/var/lib/containers/storage"
    assert conf["api"]["listen"] == "/var/run/crio/crio.sock"


def test_kata_handler_is_the_kata_deploy_shim_v2_handler() -> None:
    table = tomllib.loads(_files()["/etc/crio/crio.conf.d/50-nodeimage-kata.conf"])
    handler = table["crio"]["runtime"]["runtimes"]["kata-qemu"]
    assert handler == {
        "runtime_path": "/opt/kata/bin/containerd-shim-kata-v2",
        "runtime_type": "vm",
        "runtime_root": "/run/vc",
        "runtime_config_path": "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml",
        "privileged_without_host_devices": True,
    }
    assert STACK.runtime_class()["handler"] == "kata-qemu"
    assert STACK.runtime_class()["apiVersion"] == "node.k8s.io/v1"


def test_kubelet_unit_passes_no_cri_flags() -> None:
    files = _files()
    assert not [p for p in files if p.startswith("/etc/systemd/system/kubelet.service.d/2")]
    dropin = files["/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"]
    assert "--container-runtime" not in dropin and "--cgroup-driver" not in dropin
    assert "ExecStart=/usr/local/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS" in dropin


def test_crictl_yaml_points_at_crio() -> None:
    assert yaml.safe_load(_files()["/etc/crictl.yaml"])["runtime-endpoint"] == CRI_ENDPOINT


def test_cgroup_v2_and_no_kernel_arguments() -> None:
    assert STACK.cgroup == "v2" and STACK.kernel_args() == ()
    assert stacks.get("k8s-1.17").kernel_args() == ("systemd.unified_cgroup_hierarchy=0",)


def test_kata_check_is_kata_3s_check() -> None:
    assert STACK.kata_check == ("kata-runtime", "check", "--no-network-checks")
    links = {op.dest: op.member for op in STACK.installs(SETTINGS) if op.kind == "link"}
    assert links["/usr/local/bin/kata-runtime"] == "/opt/kata/bin/kata-runtime"


def test_installs_follow_the_bundle_install_script() -> None:
    """cri-o/packaging templates/latest/cri-o/bundle/install with its defaults (PREFIX=/usr/local, dpkg)."""
    dests = {op.dest: (op.artifact, op.member) for op in STACK.installs(SETTINGS)}
    for tool in ("conmon", "conmonrs", "crun", "runc", "crio-credential-provider"):
        assert dests[f"/usr/libexec/crio/{tool}"] == ("cri-o-bundle", f"cri-o/bin/{tool}")
    assert dests["/usr/local/bin/crio"] == ("cri-o-bundle", "cri-o/bin/crio")
    assert dests["/usr/local/lib/systemd/system/crio.service"] == ("cri-o-bundle", "cri-o/contrib/crio.service")
    assert dests["/etc/crio/policy.json"] == ("cri-o-bundle", "cri-o/contrib/policy.json")
    assert dests["/etc/default/crio"] == ("cri-o-bundle", "cri-o/etc/crio")
    # crictl and the CNI plugins from their own pinned archives, not the bundle's copies
    assert dests["/usr/local/bin/crictl"] == ("crictl-1.36", "crictl")
    assert dests["/opt/cni/bin"] == ("cni-plugins-1", ".")
    assert not [d for d in dests if d.endswith("10-crio-bridge.conflist.disabled")]
    assert "zstd" in STACK.packages  # tar unpacks the .tar.zst Kata bundle through it


# --- images: kubeadm 1.36's list -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kubeadm_136(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in kubeadm of the current stack's lock (as the image gets it)."""
    program = tmp_path_factory.mktemp("kubeadm36") / "kubeadm"
    program.write_bytes(ms.standin_program("kubeadm", "kubeadm", "v1.36.4"))
    return program


def _images_list(kubeadm: Path, *args: str) -> list[str]:
    env = {"PATH": "/usr/bin:/bin", "NODEIMAGE_STANDIN_ROOT": str(kubeadm.parent)}
    proc = subprocess.run([sys.executable, str(kubeadm), "config", "images", "list", *args], capture_output=True,
                          text=True, env=env, check=True)  # fmt: skip
    return proc.stdout.split()


def test_images_are_what_kubeadm_1_36_lists(kubeadm_136: Path) -> None:
    """The stack's list equals the stand-in kubeadm's `config images list` (both from kubeadm 1.36's images.go)."""
    assert STACK.images(SETTINGS) == _images_list(kubeadm_136, "--kubernetes-version", "v1.36.4")
    assert STACK.images(SETTINGS)[4:] == [
        "registry.k8s.io/coredns/coredns:v1.14.2", "registry.k8s.io/pause:3.10.2", "registry.k8s.io/etcd:3.6.8-0",
    ]  # fmt: skip


def test_images_from_a_private_registry_drop_the_coredns_path(kubeadm_136: Path) -> None:
    """images.go GetDNSImage: only registry.k8s.io keeps CoreDNS under coredns/."""
    private = Settings("v1.36.4", "registry.example/k8s", "amd64", SETTINGS.versions)
    assert "registry.example/k8s/coredns:v1.14.2" in STACK.images(private)
    listed = _images_list(kubeadm_136, "--kubernetes-version", "v1.36.4", "--image-repository", "registry.example/k8s")
    assert STACK.images(private) == listed


# --- profiles and the lock -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["k8s-1.36", "k8s-1.36-debian12"])
def test_current_profiles(name: str) -> None:
    p = load_profile(name)
    assert p.stack == "k8s-1.36" and p.cni.name == "flannel" and p.kubernetes.version == "v1.36.4"
    lock = load_lock(REPO / "artifacts.lock.yaml")
    entries = {e.name: e for e in lock.select(p.wanted(), p.arch)}
    assert entries["kata-containers-static"].url.endswith("/3.32.0/kata-static-3.32.0-amd64.tar.zst")
    assert entries["cri-o-bundle"].filename == "cri-o.amd64.v1.36.3.tar.gz"
    assert entries["cri-o-bundle"].checksum == "sha256:fc2ece7cc22a505cca5e100438e4e58f7786f17b64467022e2d2019239c88349"
    assert entries["kubelet"].checksum_source == "third-party"


def test_noble_profile_pins_the_dated_cloud_image() -> None:
    p = load_profile("k8s-1.36")
    assert (p.base.distro, p.base.release, p.base.source) == ("ubuntu", "noble", "cloud-image")
    image = load_lock(REPO / "artifacts.lock.yaml").entry(p.base.artifact or "", "amd64")
    assert "/noble/release-20260926/ubuntu-24.04-server-cloudimg-amd64.img" in image.url
    assert image.checksum == "sha256:6a81c37564db9b1ee84e141922625e1d7c5b389b99bb3c572e0243607d5bb4d2"
    assert image.checksum_url and image.checksum_url.endswith("/SHA256SUMS")


def test_a_1_36_profile_refuses_a_1_17_version(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "profiles" / "k8s-1.36.yaml").read_text())
    data["kubernetes"]["version"] = "v1.17.17"
    with pytest.raises(NodeimageError, match="a Kubernetes 1.36 version"):
        parse_profile(data, tmp_path / "bad.yaml")


def test_a_1_36_profile_refuses_the_classic_components(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "profiles" / "k8s-1.36.yaml").read_text())
    data["components"]["kubernetes-node"] = data["components"].pop("kubelet")
    with pytest.raises(NodeimageError, match="missing kubelet"):
        parse_profile(data, tmp_path / "bad.yaml")


def test_lock_has_a_null_digest_for_every_new_image() -> None:
    """Trust on first use: `invoke lock --profile k8s-1.36` records the images' digests (and the Flannel
    manifest's); a build refuses to start until then."""
    lock = load_lock(REPO / "artifacts.lock.yaml")
    for ref in STACK.images(SETTINGS):
        entry = lock.image(ref, "linux/amd64")
        assert entry.digest is None and entry.digest_source == "trust-on-first-use", ref
    with pytest.raises(NodeimageError, match="has no digest for"):
        make_config("k8s-1.36-debian12", out_root=Path("/tmp/nodeimage-unused"))


# --- the stage: what first boot reads ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stage36")
    lock, mirror = ms.make_standins(REPO / "artifacts.lock.yaml", out / "standins")
    config = make_config("k8s-1.36-debian12", lock_file=lock, mirror=str(mirror), out_root=out / "build")
    files = fetch(config.entries, mirror=str(mirror), cache=out / "cache")
    return write_stage(config, files, out / "stage")


def test_stack_json_names_the_kata_check_and_the_flannel_patch(stage: Path) -> None:
    data = json.loads((stage / "node/rootfs/usr/local/share/nodeimage/stack.json").read_text())
    assert data["kata_check"] == ["kata-runtime", "check", "--no-network-checks"]
    assert data["runtime_class"]["handler"] == "kata-qemu"
    assert data["cni"]["pod_cidr"] == {"method": "configmap-json", "kind": "ConfigMap", "object": "kube-flannel-cfg",
                                       "container": "net-conf.json", "name": "Network"}  # fmt: skip


def test_stage_bakes_the_1_36_and_flannel_images(stage: Path) -> None:
    refs = [line.split()[0] for line in (stage / "stack/images.txt").read_text().splitlines()]
    assert refs == [*STACK.images(SETTINGS), "ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3",
                    "ghcr.io/flannel-io/flannel:v0.28.9"]  # fmt: skip


def test_build_env_has_no_kernel_arguments_and_the_default_iptables(stage: Path) -> None:
    env = (stage / "build.env").read_text()
    assert "NODEIMAGE_KERNEL_ARGS=''" in env and "NODEIMAGE_IPTABLES=default" in env
    assert "zstd" in (stage / "os/packages.txt").read_text().split()


def test_first_boot_runs_the_stacks_kata_check(stage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """nodeimage-bootstrap takes the command from stack.json: `kata-runtime check` for Kata 3."""
    from tests.unit.test_cni import bootstrap

    share = tmp_path / "usr/local/share/nodeimage"
    share.mkdir(parents=True)
    (share / "stack.json").write_text((stage / "node/rootfs/usr/local/share/nodeimage/stack.json").read_text())
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls"
    stub = bindir / "kata-runtime"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "System is capable of running Kata Containers"\n')
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    boot = bootstrap(tmp_path, monkeypatch)
    boot.kata_check({})
    assert calls.read_text() == "check --no-network-checks\n"
    assert (tmp_path / "var/lib/nodeimage/kata-capable").read_text() == "true\n"
