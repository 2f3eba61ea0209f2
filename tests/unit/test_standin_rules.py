"""Each rule a stand-in enforces, shown refusing a broken input (and accepting the node image's own files).

The stand-ins check what the pinned upstream programs check (tests/standins/README.md has the
table and the sources). Each test here builds a fake node under a scratch root from the files the
build really stages for the classic stack (nodeimage.stage), shows that the stand-in accepts it,
then breaks one thing and asserts the stand-in fails as upstream fails: its message, a non-zero exit.
"""

from __future__ import annotations

import gzip
import io
import json
import lzma
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeimage.config import make_config
from nodeimage.fetch import fetch
from nodeimage.stage import write_stage

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "standins"))
import make_standins as ms  # noqa: E402

PROFILE = "k8s-1.17-debian12"


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The stand-in artifacts and the stage the build writes from them (the image's real files)."""
    out = tmp_path_factory.mktemp("rules")
    lock, mirror = ms.make_standins(REPO / "artifacts.lock.yaml", out / "standins")
    config = make_config(PROFILE, lock_file=lock, mirror=str(mirror), out_root=out / "build")
    files = fetch(config.entries, mirror=str(mirror), cache=out / "cache")
    return write_stage(config, files, out / "stage"), mirror


def _member(archive: Path, name: str) -> bytes:
    data = archive.read_bytes()
    data = lzma.decompress(data) if archive.suffix == ".xz" else gzip.decompress(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


class Node:
    """A scratch root laid out like a booted node of the image, and the stand-in programs on a PATH."""

    def __init__(self, tmp: Path, stage: Path) -> None:
        self.root = tmp / "root"
        self.bin = tmp / "bin"
        self.bin.mkdir()
        # the host tools kubeadm's preflight and CRI-O look for on a node's PATH (looked up, never run)
        self.tools = tmp / "tools"
        self.tools.mkdir()
        for tool in ("ip", "iptables", "mount", "nsenter", "ebtables", "ethtool", "socat", "tc", "touch"):
            (self.tools / tool).write_text("#!/bin/sh\nexit 0\n")
            (self.tools / tool).chmod(0o755)
        art = stage / "stack" / "artifacts"
        programs = {
            "kubelet": _member(art / "kubernetes-node-linux-amd64.tar.gz", "kubernetes/node/bin/kubelet"),
            "kubeadm": _member(art / "kubernetes-node-linux-amd64.tar.gz", "kubernetes/node/bin/kubeadm"),
            "kubectl": _member(art / "kubernetes-node-linux-amd64.tar.gz", "kubernetes/node/bin/kubectl"),
            "crio": _member(art / "crio-v1.17.2.tar.gz", "crio-v1.17.2/bin/crio-x86_64-static-musl"),
            "crictl": _member(art / "crictl-v1.17.0-linux-amd64.tar.gz", "crictl"),
            "kata-runtime": _member(art / "kata-static-1.12.1-x86_64.tar.xz", "./opt/kata/bin/kata-runtime"),
        }
        for name, data in programs.items():
            (self.bin / name).write_bytes(data)
            (self.bin / name).chmod(0o755)
        # the image's rendered files
        for layer in ("os", "stack", "node"):
            for line in (stage / layer / "rootfs.tsv").read_text().splitlines():
                _, path = line.split("\t")
                self.put(path, (stage / layer / "rootfs" / path.lstrip("/")).read_bytes())
        for d in (stage / "stack" / "directories.txt").read_text().split():
            (self.root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
        for path in ("/usr/sbin/runc", "/usr/local/bin/conmon", "/usr/local/bin/pinns", "/usr/local/bin/kata-runtime"):
            self.put(path, b"#!/bin/sh\n", 0o755)
        # the kernel's state on a correctly set-up node
        self.put("/proc/sys/net/bridge/bridge-nf-call-iptables", b"1\n")
        self.put("/proc/sys/net/ipv4/ip_forward", b"1\n")
        self.put("/proc/swaps", b"Filename\t\t\t\tType\t\tSize\tUsed\tPriority\n")
        cgroups = "".join(f"{c}\t0\t1\t1\n" for c in ("cpuset", "cpu", "cpuacct", "devices", "freezer", "memory"))
        self.put("/proc/cgroups", ("#subsys_name\thierarchy\tnum_cgroups\tenabled\n" + cgroups).encode())
        self.put(f"/boot/config-{os.uname().release}", b"CONFIG_NAMESPACES=y\n")
        (self.root / "sys/fs/cgroup/memory").mkdir(parents=True)  # a v1 (hybrid) layout: no cgroup.controllers
        self.daemon: subprocess.Popen[str] | None = None

    def put(self, path: str, data: bytes, mode: int = 0o644) -> Path:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)
        return target

    def path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def env(self, **extra: str) -> dict[str, str]:
        path = f"{self.bin}:{self.tools}:/usr/sbin:/usr/bin:/sbin:/bin"
        return {"PATH": path, "NODEIMAGE_STANDIN_ROOT": str(self.root), **extra}

    def run(self, tool: str, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(self.bin / tool), *args], input=stdin, capture_output=True, text=True,
            env=self.env(**env), timeout=120,
        )  # fmt: skip

    def start_crio(self) -> None:
        self.daemon = subprocess.Popen(
            [sys.executable, str(self.bin / "crio")], env=self.env(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        sock = self.path("/var/run/crio/crio.sock")
        deadline = time.monotonic() + 20
        while not sock.exists():
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"crio did not start: {self.daemon.communicate()[0]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            self.daemon.wait(timeout=10)


@pytest.fixture
def node(tmp_path: Path, staged: tuple[Path, Path]) -> Iterator[Node]:
    n = Node(tmp_path, staged[0])
    yield n
    n.stop()


def crio_conf(node: Node) -> Path:
    return node.path("/etc/crio/crio.conf")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


# --- crio (cri-o v1.17.2 pkg/config/config.go) ------------------------------------------------------------------


def test_crio_starts_with_the_image_configuration(node: Node, tmp_path: Path) -> None:
    """It notifies systemd (Type=notify) once its socket listens, serves, and stops on SIGTERM removing it."""
    notify_path = tmp_path / "notify"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(20)
    env = node.env(NOTIFY_SOCKET=str(notify_path))
    node.daemon = subprocess.Popen([sys.executable, str(node.bin / "crio")], env=env)
    assert notify.recv(64) == b"READY=1"
    notify.close()
    info = json.loads(node.run("crictl", "info").stdout)
    assert info["config"]["cgroup_manager"] == "systemd"
    assert info["config"]["runtimes"] == ["kata-runtime", "runc"]
    node.daemon.send_signal(signal.SIGTERM)
    assert node.daemon.wait(timeout=10) == 0
    assert not node.path("/var/run/crio/crio.sock").exists()


CRIO_BREAKS = [
    # (what is broken, how, the message CRI-O 1.17.2 exits with)
    ("hooks dir missing", lambda n: shutil.rmtree(n.path("/usr/share/containers/oci/hooks.d")), "invalid hooks_dir"),
    ("conmon missing", lambda n: n.path("/usr/local/bin/conmon").unlink(), "conmon validation: invalid conmon path"),
    ("pinns missing", lambda n: n.path("/usr/local/bin/pinns").unlink(), "pinns validation: invalid pinns path"),
    ("runtime missing", lambda n: n.path("/usr/sbin/runc").unlink(), "invalid runtime_path for runtime 'runc'"),
    ("kata runtime missing", lambda n: n.path("/usr/local/bin/kata-runtime").unlink(),
     "invalid runtime_path for runtime 'kata-runtime'"),
    ("conmon_cgroup", lambda n: edit(crio_conf(n), 'conmon_cgroup = "pod"', 'conmon_cgroup = "system"'),
     "conmon cgroup should be 'pod' or a systemd slice"),
    ("runtime_type", lambda n: edit(crio_conf(n), 'runtime_type = "oci"', 'runtime_type = "kvm"'),
     "invalid `runtime_type` \"kvm\""),
    ("default runtime", lambda n: edit(crio_conf(n), 'default_runtime = "runc"', 'default_runtime = "crun"'),
     "default_runtime set to \"crun\", but no runtime entry was found for it"),
    ("log_size_max", lambda n: edit(crio_conf(n), "log_size_max = -1", "log_size_max = 100"),
     "log size max should be negative or >= 8192"),
    ("log_dir", lambda n: edit(crio_conf(n), 'log_dir = "/var/log/crio/pods"', 'log_dir = "var/log"'),
     "log_dir is not an absolute path"),
    ("misspelt key", lambda n: edit(crio_conf(n), "cgroup_manager =", "cgroups_manager ="),
     "keys CRI-O 1.17.2 does not know: crio.runtime.cgroups_manager"),
    ("drop-in with an unknown key", lambda n: n.put("/etc/crio/crio.conf.d/10-x.conf", b"[crio.image]\nregistry = 1\n"),
     "crio.image.registry"),
    ("not TOML", lambda n: n.put("/etc/crio/crio.conf.d/10-x.conf", b"[crio\n"), "unable to decode configuration"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "breakit", "message"), CRIO_BREAKS, ids=[b[0] for b in CRIO_BREAKS])
def test_crio_refuses(node: Node, what: str, breakit, message: str) -> None:
    breakit(node)
    proc = node.run("crio")
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr
    assert "level=fatal" in proc.stderr


def test_crio_drop_in_handler_replaces_the_whole_entry(node: Node) -> None:
    """A [crio.runtime.runtimes.X] table replaces X whole (BurntSushi toml v0.3.1 decode.go:287-303): a drop-in
    that only renames runc's path loses nothing else, but one naming a missing path is checked."""
    node.put("/etc/crio/crio.conf.d/50-runc.conf", b'[crio.runtime.runtimes.runc]\nruntime_path = "/nope/runc"\n')
    proc = node.run("crio")
    assert proc.returncode == 1 and "invalid runtime_path for runtime 'runc'" in proc.stderr


def test_crio_explicit_missing_config_is_fatal_default_missing_is_not(node: Node) -> None:
    assert "no such file" in node.run("crio", "--config", "/etc/crio/nope.conf", "config").stderr
    crio_conf(node).unlink()
    # without the file CRI-O takes its defaults: runc from $PATH, conmon from $PATH... which this PATH lacks
    proc = node.run("crio")
    assert proc.returncode == 1 and "not found in $PATH" in proc.stderr


def test_crio_needs_nsenter_on_path(node: Node) -> None:
    proc = subprocess.run(
        [sys.executable, str(node.bin / "crio")], capture_output=True, text=True,
        env={"PATH": str(node.bin), "NODEIMAGE_STANDIN_ROOT": str(node.root)}, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1 and 'exec: "nsenter": executable file not found in $PATH' in proc.stderr


def test_crio_with_apparmor_needs_the_profile(node: Node) -> None:
    node.put("/sys/module/apparmor/parameters/enabled", b"Y\n")
    node.put("/sbin/apparmor_parser", b"", 0o755)
    edit(crio_conf(node), 'apparmor_profile = "crio-default-1.17.2"', 'apparmor_profile = "my-profile"')
    proc = node.run("crio")
    assert proc.returncode == 1 and "config provided AppArmor profile \"my-profile\" not loaded" in proc.stderr


# --- crictl (cri-tools v1.17.0) -----------------------------------------------------------------------------------


def test_crictl_reads_its_endpoint_from_crictl_yaml(node: Node) -> None:
    node.start_crio()
    assert node.run("crictl", "info").returncode == 0
    edit(node.path("/etc/crictl.yaml"), "runtime-endpoint: unix:///var/run/crio/crio.sock",
         "runtime-endpoint: unix:///run/containerd/containerd.sock")  # fmt: skip
    proc = node.run("crictl", "info")
    assert proc.returncode == 1 and "connect endpoint 'unix:///run/containerd/containerd.sock'" in proc.stderr


def test_crictl_refuses_a_timeout_that_is_not_seconds(node: Node) -> None:
    edit(node.path("/etc/crictl.yaml"), "timeout: 10", "timeout: 10s")
    proc = node.run("crictl", "info")
    assert proc.returncode == 1 and "Falied to load config file" in proc.stderr  # sic, upstream's spelling


def test_crictl_pull_fails_and_is_recorded(node: Node) -> None:
    node.start_crio()
    proc = node.run("crictl", "pull", "registry.k8s.io/pause:3.1")
    assert proc.returncode == 1
    assert node.path("/var/log/nodeimage-standins/crio-pulls.log").read_text() == "registry.k8s.io/pause:3.1\n"


# --- kubelet (kubernetes release-1.17 cmd/kubelet, pkg/kubelet/cm) -------------------------------------------------


KUBELET_ARGS = [
    "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf", "--kubeconfig=/etc/kubernetes/kubelet.conf",
    "--config=/var/lib/kubelet/config.yaml", "--container-runtime=remote",
    "--container-runtime-endpoint=unix:///var/run/crio/crio.sock", "--cgroup-driver=systemd",
    "--runtime-request-timeout=10m", "--node-ip=192.168.100.10", "--node-labels=katacontainers.io/kata-runtime=true",
]  # fmt: skip


def _kubelet_config(node: Node) -> None:
    conf = b"apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n"
    node.put("/var/lib/kubelet/config.yaml", conf)


def test_kubelet_runs_with_the_image_flags(node: Node) -> None:
    _kubelet_config(node)
    node.start_crio()
    proc = subprocess.Popen([sys.executable, str(node.bin / "kubelet"), *KUBELET_ARGS], env=node.env(),
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        started = node.path("/var/log/nodeimage-standins/kubelet-started.log")
        while not started.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--container-runtime=crio"], 'unsupported CRI runtime: "crio"'),
        (["--cgroups-driver=systemd"], "unknown flag: --cgroups-driver"),
        (["--node-labels=node-role.kubernetes.io/worker="], "unknown 'kubernetes.io' or 'k8s.io' labels"),
    ],
)
def test_kubelet_refuses_flags_1_17_refuses(node: Node, args: list[str], message: str) -> None:
    _kubelet_config(node)
    proc = node.run("kubelet", *KUBELET_ARGS, *args)
    assert proc.returncode == 255 and message in proc.stderr


def test_kubelet_refuses_a_config_that_is_not_a_kubelet_configuration(node: Node) -> None:
    node.put("/var/lib/kubelet/config.yaml", b"apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\n")
    proc = node.run("kubelet", *KUBELET_ARGS)
    assert proc.returncode == 255 and "failed to load Kubelet config file /var/lib/kubelet/config.yaml" in proc.stderr


def test_kubelet_refuses_swap(node: Node) -> None:
    _kubelet_config(node)
    node.put("/proc/swaps", b"Filename Type Size Used Priority\n/swap.img file 1024 0 -2\n")
    proc = node.run("kubelet", *KUBELET_ARGS)
    assert proc.returncode == 255 and "running with swap on is not supported" in proc.stderr


def test_kubelet_1_17_refuses_cgroup_v2(node: Node) -> None:
    _kubelet_config(node)
    node.start_crio()
    node.put("/sys/fs/cgroup/cgroup.controllers", b"cpuset cpu io memory pids\n")
    proc = node.run("kubelet", *KUBELET_ARGS)
    assert proc.returncode == 255
    assert "Following Cgroup subsystem not mounted: [cpu cpuacct cpuset memory]" in proc.stderr


# --- kubeadm (kubernetes release-1.17 cmd/kubeadm) ---------------------------------------------------------------


INIT = """apiVersion: kubeadm.k8s.io/v1beta2
kind: InitConfiguration
bootstrapTokens: [{token: abcdef.0123456789abcdef}]
nodeRegistration: {name: cp, criSocket: /var/run/crio/crio.sock, kubeletExtraArgs: {node-ip: 192.168.100.10}}
localAPIEndpoint: {advertiseAddress: 192.168.100.10, bindPort: 6443}
---
apiVersion: kubeadm.k8s.io/v1beta2
kind: ClusterConfiguration
kubernetesVersion: v1.17.17
imageRepository: registry.k8s.io
networking: {podSubnet: 10.244.0.0/16, serviceSubnet: 10.96.0.0/12}
"""


def _init(node: Node, text: str = INIT) -> subprocess.CompletedProcess[str]:
    node.put("/etc/nodeimage/kubeadm/kubeadm.yaml", text.encode(), 0o600)
    return node.run("kubeadm", "init", "--config", "/etc/nodeimage/kubeadm/kubeadm.yaml")


def test_kubeadm_init_preflight_passes_on_the_image_and_fails_at_the_first_pull(node: Node) -> None:
    node.start_crio()
    proc = _init(node)
    # every preflight check passed; no image is present, and the stand-in CRI-O cannot pull
    pull = "[ERROR ImagePull]: failed to pull image registry.k8s.io/kube-apiserver:v1.17.17"
    assert proc.returncode == 1 and pull in proc.stderr, proc.stderr
    assert "Some fatal errors occurred" in proc.stderr and "[ERROR Swap]" not in proc.stderr
    recorded = node.path("/var/log/nodeimage-standins/kubeadm-init-config.yaml").read_text()
    assert recorded == node.path("/etc/nodeimage/kubeadm/kubeadm.yaml").read_text()


PREFLIGHT_BREAKS = [
    ("swap", lambda n: n.put("/proc/swaps", b"Filename\n/swapfile file 1 0 -2\n"),
     "[ERROR Swap]: running with swap on is not supported. Please disable swap"),
    ("bridge-nf-call-iptables", lambda n: n.put("/proc/sys/net/bridge/bridge-nf-call-iptables", b"0\n"),
     "[ERROR FileContent--proc-sys-net-bridge-bridge-nf-call-iptables]: /proc/sys/net/bridge/bridge-nf-call-iptables "
     "contents are not set to 1"),
    ("ip_forward", lambda n: n.put("/proc/sys/net/ipv4/ip_forward", b"0\n"),
     "[ERROR FileContent--proc-sys-net-ipv4-ip_forward]"),
    ("crictl missing", lambda n: (n.bin / "crictl").unlink(), "[ERROR FileExisting-crictl]: crictl not found"),
    ("crio not running", lambda n: None, "[ERROR CRI]: container runtime is not running"),
    ("manifests left over", lambda n: n.put("/etc/kubernetes/manifests/kube-apiserver.yaml", b""),
     "[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]"),
    ("no kernel config", lambda n: n.path(f"/boot/config-{os.uname().release}").unlink(),
     "[ERROR SystemVerification]: failed to parse kernel config"),
    ("cgroup disabled", lambda n: n.put("/proc/cgroups", b"#subsys\thierarchy\tnum_cgroups\tenabled\ncpu\t0\t1\t1\n"),
     "[ERROR SystemVerification]: missing cgroups: cpuacct cpuset devices freezer memory"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "breakit", "message"), PREFLIGHT_BREAKS, ids=[b[0] for b in PREFLIGHT_BREAKS])
def test_kubeadm_preflight_refuses(node: Node, what: str, breakit, message: str) -> None:
    if what != "crio not running":
        node.start_crio()
    breakit(node)
    proc = _init(node)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr


def test_kubeadm_preflight_port_in_use(node: Node) -> None:
    node.start_crio()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", 10250))
        except OSError:
            pytest.skip("port 10250 is taken on this machine")
        s.listen(1)
        proc = _init(node)
    assert proc.returncode == 1 and "[ERROR Port-10250]: Port 10250 is in use" in proc.stderr


CONFIG_BREAKS = [
    ("unknown field", INIT.replace("bindPort: 6443", "bindPort: 6443, port: 1"),
     "InitConfiguration has fields kubeadm.k8s.io/v1beta2 does not have: localAPIEndpoint.port"),
    ("v1beta4 field", INIT.replace("kubeletExtraArgs: {node-ip: 192.168.100.10}",
                                   "kubeletExtraArgs: {node-ip: 192.168.100.10}, imagePullPolicy: Never"),
     "nodeRegistration.imagePullPolicy"),
    ("newer API", INIT.replace("kubeadm.k8s.io/v1beta2", "kubeadm.k8s.io/v1beta4", 1),
     "this stand-in takes only kubeadm.k8s.io/v1beta2"),
    ("old API", INIT.replace("kubeadm.k8s.io/v1beta2", "kubeadm.k8s.io/v1alpha3", 1), "uses an old API spec"),
    ("no kind", INIT.replace("kind: InitConfiguration\n", ""), "kind and apiVersion is mandatory"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "text", "message"), CONFIG_BREAKS, ids=[b[0] for b in CONFIG_BREAKS])
def test_kubeadm_takes_only_v1beta2_fields(node: Node, what: str, text: str, message: str) -> None:
    proc = _init(node, text)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr


def test_kubeadm_lists_1_17_images_for_the_repository(node: Node) -> None:
    """kubernetes release-1.17 cmd/kubeadm/app/constants/constants.go: etcd 3.4.3-0, pause 3.1, CoreDNS 1.6.5."""
    node.put("/tmp/k.yaml", INIT.encode())
    proc = node.run("kubeadm", "config", "images", "list", "--config", "/tmp/k.yaml")
    assert proc.stdout.split() == [
        "registry.k8s.io/kube-apiserver:v1.17.17", "registry.k8s.io/kube-controller-manager:v1.17.17",
        "registry.k8s.io/kube-scheduler:v1.17.17", "registry.k8s.io/kube-proxy:v1.17.17", "registry.k8s.io/pause:3.1",
        "registry.k8s.io/etcd:3.4.3-0", "registry.k8s.io/coredns:1.6.5",
    ]  # fmt: skip


def test_kubeadm_reset_empties_pki(node: Node) -> None:
    """kubeadm reset removes /etc/kubernetes/pki too: a retried init must get the cluster's CA back."""
    node.put("/etc/kubernetes/pki/ca.key", b"key", 0o600)
    node.put("/etc/kubernetes/manifests/etcd.yaml", b"")
    assert node.run("kubeadm", "reset", "-f").returncode == 0
    assert not node.path("/etc/kubernetes/pki/ca.key").exists()
    assert not node.path("/etc/kubernetes/manifests/etcd.yaml").exists()


# --- kubectl (served API versions of Kubernetes 1.17) --------------------------------------------------------------


def test_kubectl_refuses_a_runtimeclass_1_17_does_not_serve(node: Node) -> None:
    node.put("/etc/kubernetes/admin.conf", b"apiVersion: v1\nkind: Config\nclusters: [{name: k, cluster: {}}]\n")
    v1 = json.dumps({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "kata"},
                     "handler": "kata-runtime"})  # fmt: skip
    proc = node.run("kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "apply", "-f", "-", stdin=v1)
    assert proc.returncode == 1 and 'no matches for kind "RuntimeClass" in version "node.k8s.io/v1"' in proc.stderr
    ok = v1.replace("node.k8s.io/v1", "node.k8s.io/v1beta1")
    applied = node.run("kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "apply", "-f", "-", stdin=ok)
    assert applied.returncode == 0, applied.stderr


def test_kubectl_needs_a_kubeconfig(node: Node) -> None:
    node.put("/etc/kubernetes/admin.conf", b"# not a kubeconfig\n")
    proc = node.run("kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "apply", "-f", "-", stdin="{}")
    assert proc.returncode == 1 and "not a kubeconfig" in proc.stderr


# --- kata-runtime kata-check (kata-containers/runtime 1.12.1) -----------------------------------------------------


INTEL = b"processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vmx lm sse4_1 hypervisor\n\n"


def _kata_host(node: Node, cpuinfo: bytes = INTEL, modules: tuple[str, ...] = ("kvm", "kvm_intel", "vhost",
                                                                                "vhost_net")) -> None:  # fmt: skip
    node.put("/proc/cpuinfo", cpuinfo)
    for m in modules:
        node.path(f"/sys/module/{m}").mkdir(parents=True, exist_ok=True)
    defaults = node.path("/opt/kata/share/defaults/kata-containers")
    defaults.mkdir(parents=True, exist_ok=True)
    for blob in ("/opt/kata/bin/qemu-system-x86_64", "/opt/kata/share/kata-containers/vmlinuz.container",
                 "/opt/kata/share/kata-containers/kata-containers.img",
                 "/opt/kata/libexec/kata-containers/kata-proxy", "/opt/kata/libexec/kata-containers/kata-shim"):
        node.put(blob, b"x")  # fmt: skip
    (defaults / "configuration.toml").write_text(
        '[hypervisor.qemu]\npath = "/opt/kata/bin/qemu-system-x86_64"\n'
        'kernel = "/opt/kata/share/kata-containers/vmlinuz.container"\n'
        'image = "/opt/kata/share/kata-containers/kata-containers.img"\n'
        '[proxy.kata]\npath = "/opt/kata/libexec/kata-containers/kata-proxy"\n'
        '[shim.kata]\npath = "/opt/kata/libexec/kata-containers/kata-shim"\n'
    )
    node.put("/dev/kvm", b"")


def test_kata_check_passes_on_a_capable_host(node: Node) -> None:
    _kata_host(node)
    proc = node.run("kata-runtime", "kata-check", "--no-network-checks")
    assert proc.returncode == 0 and proc.stdout.startswith("System is capable of running Kata Containers")


@pytest.mark.parametrize(
    ("what", "setup", "message"),
    [
        ("no vmx", lambda n: _kata_host(n, INTEL.replace(b"vmx ", b"")), "ERROR: System is not capable"),
        ("no vhost_net", lambda n: _kata_host(n, modules=("kvm", "kvm_intel", "vhost")), "ERROR: System is not"),
        ("no configuration", lambda n: None, "Cannot find usable config file"),
        ("kernel missing", lambda n: (_kata_host(n), n.path(
            "/opt/kata/share/kata-containers/vmlinuz.container").unlink()),
         "file /opt/kata/share/kata-containers/vmlinuz.container does not exist"),
    ],
)  # fmt: skip
def test_kata_check_refuses(node: Node, what: str, setup, message: str) -> None:
    setup(node)
    proc = node.run("kata-runtime", "kata-check", "--no-network-checks")
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr


def test_kata_check_as_non_root_queries_the_network(node: Node) -> None:
    """cli/kata-check.go:392-406: without --no-network-checks a non-root kata-check asks GitHub, fatally here."""
    _kata_host(node)
    proc = node.run("kata-runtime", "kata-check", NODEIMAGE_STANDIN_EUID="1000")
    assert proc.returncode == 1 and "api.github.com" in proc.stderr
    offline = node.run("kata-runtime", "kata-check", NODEIMAGE_STANDIN_EUID="1000", KATA_CHECK_NO_NETWORK="1")
    assert offline.returncode == 0, offline.stderr


def test_kata_1_12_has_no_config_flag(node: Node) -> None:
    _kata_host(node)
    proc = node.run("kata-runtime", "--config", "/x.toml", "kata-check")
    assert proc.returncode == 1 and "flag provided but not defined: -config" in proc.stderr
