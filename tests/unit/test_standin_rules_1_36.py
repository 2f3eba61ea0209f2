"""Each 1.36 rule a stand-in enforces, shown refusing a broken input (and accepting the current stack's own files).

As tests/unit/test_standin_rules.py does for the classic stack: a fake node under a scratch root holds what
the build stages for ``k8s-1.36-debian12`` (every install of install.tsv done as stack/10-install.sh does it,
every rendered file), the stand-in programs are the ones the image gets, and each test breaks one thing and
asserts the stand-in fails as the pinned 1.36 program fails. The sources of each rule are cited in the
programs (tests/standins/programs/) and tabled in tests/standins/README.md.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from nodeimage.config import make_config
from nodeimage.fetch import fetch
from nodeimage.stage import write_stage
from tests.unit.test_standin_rules import Node, edit

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "standins"))
import make_standins as ms  # noqa: E402

PROFILE = "k8s-1.36-debian12"
DROPINS = "/etc/crio/crio.conf.d"
CONTROLLERS = b"cpuset cpu io memory hugetlb pids rdma misc\n"  # a Debian 12 root cgroup (v2)


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rules36")
    lock, mirror = ms.make_standins(REPO / "artifacts.lock.yaml", out / "standins")
    config = make_config(PROFILE, lock_file=lock, mirror=str(mirror), out_root=out / "build")
    files = fetch(config.entries, mirror=str(mirror), cache=out / "cache")
    return write_stage(config, files, out / "stage")


def _tar(archive: Path) -> tarfile.TarFile:
    data = archive.read_bytes()
    if archive.name.endswith(".zst"):
        data = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
    return tarfile.open(fileobj=io.BytesIO(data))


def install(stage: Path, root: Path) -> None:
    """What stack/10-install.sh does with install.tsv, into ``root`` (file, tree, link)."""
    for line in (stage / "stack" / "install.tsv").read_text().splitlines():
        kind, archive, member, dest, mode = line.split("\t")
        target = root / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        src = stage / "stack" / archive
        if kind == "link":
            target.symlink_to(member)
        elif kind == "file" and member == "-":
            shutil.copyfile(src, target)
            target.chmod(int(mode, 8))
        elif kind == "file":
            with _tar(src) as tar:
                f = tar.extractfile(member)
                assert f is not None, member
                target.write_bytes(f.read())
            target.chmod(int(mode, 8))
        else:
            with _tar(src) as tar:
                prefix = "" if member == "." else member.rstrip("/") + "/"
                for m in tar.getmembers():
                    name = m.name[2:] if m.name.startswith("./") and member == "." else m.name
                    if member != "." and not m.name.startswith(prefix):
                        continue
                    rel = name[len(prefix) :] if prefix else name
                    if not rel or rel == ".":
                        continue
                    out = target / rel
                    if m.isdir():
                        out.mkdir(parents=True, exist_ok=True)
                    elif m.issym():
                        out.parent.mkdir(parents=True, exist_ok=True)
                        out.symlink_to(m.linkname)
                    else:
                        out.parent.mkdir(parents=True, exist_ok=True)
                        f = tar.extractfile(m)
                        assert f is not None
                        out.write_bytes(f.read())
                        out.chmod(m.mode)


class Node36(Node):
    """A node of the current stack's image: its installs and files under a scratch root, its programs on a PATH.

    The layout is made once per module (``template``) and copied for each test."""

    def __init__(self, tmp: Path, template: Path) -> None:
        shutil.copytree(template, tmp, symlinks=True, dirs_exist_ok=True)
        self.root = tmp / "root"
        self.bin = tmp / "bin"
        self.tools = tmp / "tools"
        self.daemon: subprocess.Popen[str] | None = None


def make_template(stage: Path, tmp: Path) -> Path:
    root, bindir, tools = tmp / "root", tmp / "bin", tmp / "tools"
    for d in (root, bindir, tools):
        d.mkdir(parents=True)
    # kubeadm 1.36's mandatory host tools (mount, losetup, cp) and the rest a node has (looked up, never run)
    for tool in ("mount", "losetup", "cp", "nsenter", "iptables", "ip"):
        (tools / tool).write_text("#!/bin/sh\nexit 0\n")
        (tools / tool).chmod(0o755)
    install(stage, root)
    node = Node36.__new__(Node36)
    node.root, node.bin, node.tools = root, bindir, tools
    for layer in ("os", "stack", "node"):
        for line in (stage / layer / "rootfs.tsv").read_text().splitlines():
            _, path = line.split("\t")
            node.put(path, (stage / layer / "rootfs" / path.lstrip("/")).read_bytes())
    for d in (stage / "stack" / "directories.txt").read_text().split():
        (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    # the programs first boot runs, from where the image has them (pinns: crio looks it up on PATH)
    for name, path in (("kubelet", "/usr/local/bin/kubelet"), ("kubeadm", "/usr/local/bin/kubeadm"),
                       ("kubectl", "/usr/local/bin/kubectl"), ("crio", "/usr/local/bin/crio"),
                       ("crictl", "/usr/local/bin/crictl"), ("pinns", "/usr/local/bin/pinns"),
                       ("kata-runtime", "/opt/kata/bin/kata-runtime")):  # fmt: skip
        shutil.copyfile(node.path(path), bindir / name)
        (bindir / name).chmod(0o755)
    # the kernel's state on a correctly set-up node
    node.put("/proc/sys/net/ipv4/ip_forward", b"1\n")
    node.put("/proc/swaps", b"Filename\t\t\t\tType\t\tSize\tUsed\tPriority\n")
    node.put("/proc/meminfo", b"MemTotal:        2017804 kB\nMemFree:          100000 kB\n")
    node.put(f"/boot/config-{os.uname().release}", b"CONFIG_NAMESPACES=y\n")
    node.put("/sys/fs/cgroup/cgroup.controllers", CONTROLLERS)  # the unified (v2) layout
    return tmp


@pytest.fixture(scope="module")
def template(staged: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_template(staged, tmp_path_factory.mktemp("node36"))


@pytest.fixture
def node(tmp_path: Path, template: Path) -> Iterator[Node36]:
    n = Node36(tmp_path, template)
    yield n
    n.stop()


def crio_info(node: Node36) -> dict:
    proc = node.run("crictl", "info")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# --- crio (cri-o v1.36.3 pkg/config/config.go Validate, drop-in directory) -------------------------------------


def test_crio_36_starts_with_the_bundle_and_nodeimage_drop_ins(node: Node36) -> None:
    """10-crio.conf (the bundle's) then 20-nodeimage.conf and 50-nodeimage-kata.conf, merged in lexical order."""
    assert not node.path("/etc/crio/crio.conf").exists()  # no main file: the drop-ins are the configuration
    node.start_crio()
    config = crio_info(node)["config"]
    assert config["cgroup_manager"] == "systemd"
    assert config["default_runtime"] == "crun"
    assert config["runtimes"] == ["crun", "kata-qemu", "runc"]


def _crio_fails(node: Node36, message: str) -> None:
    proc = node.run("crio")
    assert proc.returncode == 1, proc.stderr
    assert 'level=fatal msg="' in proc.stderr and message in proc.stderr, proc.stderr


def dropin(node: Node36, name: str, text: str) -> None:
    node.put(f"{DROPINS}/{name}", text.encode())


CRIO_36_FATAL = [
    # (what is broken, how, the message CRI-O 1.36.3 exits with)
    ("default runtime missing", lambda n: n.path("/usr/libexec/crio/crun").unlink(),
     "validating runtime config: runtime validation: invalid runtime_path for runtime 'crun'"),
    ("no default runtime table", lambda n: dropin(n, "90-x.conf", '[crio.runtime]\ndefault_runtime = "kata"\n'),
     'default_runtime set to "kata", but no runtime entry table [crio.runtime.runtimes.kata] was found'),
    ("conmon missing", lambda n: n.path("/usr/libexec/crio/conmon").unlink(),
     "monitor fields translation: failed to translate monitor fields for runtime crun: invalid conmon path"),
    ("conmon not answering its version",
     lambda n: n.put("/usr/libexec/crio/conmon", b"#!/bin/sh\necho conmon\n", 0o755),
     "conmon version output too short: expected three fields, got 1"),
    ("conmon_cgroup", lambda n: edit(n.path(f"{DROPINS}/20-nodeimage.conf"), 'conmon_cgroup = "pod"',
                                     'conmon_cgroup = "system"'),
     "conmon cgroup should be 'pod' or a systemd slice"),
    ("cgroup_manager", lambda n: edit(n.path(f"{DROPINS}/20-nodeimage.conf"), 'cgroup_manager = "systemd"',
                                      'cgroup_manager = "systemd2"'),
     "unable to update cgroup manager: invalid cgroup manager: systemd2"),
    ("pinns missing", lambda n: (n.bin / "pinns").unlink(),
     'pinns validation: exec: "pinns": executable file not found'),
    ("pause image", lambda n: edit(n.path(f"{DROPINS}/20-nodeimage.conf"), "pause:3.10.2", "pause:"),
     "validating image config: invalid pause image"),
    ("config path on an oci handler", lambda n: dropin(
        n, "90-x.conf", '[crio.runtime.runtimes.crun]\nruntime_path = "/usr/libexec/crio/crun"\n'
        'runtime_config_path = "/etc/crio/policy.json"\n'),
     "runtime_config_path can only be used with the 'vm' runtime type"),
    ("runtime_type of the default", lambda n: dropin(
        n, "90-x.conf", '[crio.runtime.runtimes.crun]\nruntime_path = "/usr/libexec/crio/crun"\n'
        'runtime_type = "kvm"\n'),
     'invalid `runtime_type` "kvm" for runtime "crun"'),
    ("signature policy dir", lambda n: dropin(n, "90-x.conf", '[crio.image]\nsignature_policy_dir = "policies"\n'),
     'validating image config: signature policy dir "policies" is not absolute'),
    ("misspelt key in a drop-in", lambda n: dropin(n, "90-x.conf", '[crio.runtime]\ncgroups_manager = "systemd"\n'),
     "keys CRI-O 1.36.3 does not know: crio.runtime.cgroups_manager"),
    ("not TOML", lambda n: dropin(n, "90-x.conf", "[crio\n"), "unable to decode configuration"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "breakit", "message"), CRIO_36_FATAL, ids=[b[0] for b in CRIO_36_FATAL])
def test_crio_36_refuses(node: Node36, what: str, breakit, message: str) -> None:
    breakit(node)
    _crio_fails(node, message)


CRIO_36_DROPPED = [
    # A broken handler that is not the default is dropped with a warning (config.go:1623-1636): Kata pods then fail.
    ("shim missing", lambda n: n.path("/opt/kata/bin/containerd-shim-kata-v2").unlink(),
     "invalid runtime_path for runtime 'kata-qemu'"),
    ("shim naming", lambda n: edit(n.path(f"{DROPINS}/50-nodeimage-kata.conf"),
                                   'runtime_path = "/opt/kata/bin/containerd-shim-kata-v2"',
                                   'runtime_path = "/opt/kata/bin/kata-runtime"'),
     "containerd binary naming pattern is not followed"),
    ("config missing", lambda n: n.path("/opt/kata/share/defaults/kata-containers/configuration-qemu.toml").unlink(),
     "invalid runtime_config_path for runtime 'kata-qemu'"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "breakit", "message"), CRIO_36_DROPPED, ids=[b[0] for b in CRIO_36_DROPPED])
def test_crio_36_drops_a_broken_kata_handler(node: Node36, what: str, breakit, message: str) -> None:
    breakit(node)
    node.daemon = subprocess.Popen([sys.executable, str(node.bin / "crio")], env=node.env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)  # fmt: skip
    sock = node.path("/var/run/crio/crio.sock")
    deadline = time.monotonic() + 20
    while not sock.exists():
        assert node.daemon.poll() is None and time.monotonic() < deadline, node.daemon.communicate()
        time.sleep(0.1)
    assert crio_info(node)["config"]["runtimes"] == ["crun", "runc"]
    node.stop()
    assert node.daemon.stderr is not None
    warning = node.daemon.stderr.read()
    assert 'level=warning msg="Runtime handler "kata-qemu" is being ignored due to: ' in warning
    assert message in warning


def test_crio_36_creates_missing_hooks_directories(node: Node36) -> None:
    """1.17.2 exits on a missing hooks directory; 1.36.3 creates it (config.go:1445-1472)."""
    hooks = node.path("/usr/share/containers/oci/hooks.d")
    assert not hooks.exists()
    node.start_crio()
    assert hooks.is_dir()


def test_crio_36_refuses_a_socket_another_crio_serves(node: Node36) -> None:
    node.start_crio()
    _crio_fails(node, "validating api config: already existing connection on /var/run/crio/crio.sock")


def test_crio_36_needs_no_nsenter(node: Node36) -> None:
    """ocicni's nsenter lookup was 1.17's; 1.36 has its own CNI manager (no LookPath("nsenter") in pkg, internal)."""
    env = {"PATH": str(node.bin), "NODEIMAGE_STANDIN_ROOT": str(node.root)}
    node.daemon = subprocess.Popen([sys.executable, str(node.bin / "crio")], env=env)
    deadline = time.monotonic() + 20
    while not node.path("/var/run/crio/crio.sock").exists():
        assert node.daemon.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)


# --- crictl (cri-tools v1.36.0) ----------------------------------------------------------------------------------


def test_crictl_36_drops_a_bad_config_silently_and_refuses_it_when_named(node: Node36) -> None:
    """pkg/common/file.go refuses an unknown key; cmd/crictl/main.go:325-333 makes that fatal only with -c."""
    node.start_crio()
    assert node.run("crictl", "info").returncode == 0
    with node.path("/etc/crictl.yaml").open("a") as fh:
        fh.write("pull-image-on-run: true\n")
    silent = node.run("crictl", "info")
    # the file is ignored: the deprecated default endpoints, containerd's first, answer nothing here
    assert silent.returncode == 1 and "runtime connect using default endpoints" in silent.stderr
    named = node.run("crictl", "-c", "/etc/crictl.yaml", "info")
    assert named.returncode == 1 and "Config option 'pull-image-on-run' is not valid" in named.stderr


def test_crictl_36_timeout_is_whole_seconds(node: Node36) -> None:
    edit(node.path("/etc/crictl.yaml"), "timeout: 10", "timeout: 10s")
    proc = node.run("crictl", "-c", "/etc/crictl.yaml", "info")
    assert proc.returncode == 1 and "parsing config option 'timeout': strconv.Atoi" in proc.stderr


# --- kubelet (kubernetes v1.36) -----------------------------------------------------------------------------------


KUBELET_ARGS = [
    "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf", "--kubeconfig=/etc/kubernetes/kubelet.conf",
    "--config=/var/lib/kubelet/config.yaml", "--node-ip=192.168.100.10",
    "--node-labels=katacontainers.io/kata-runtime=true",
]  # fmt: skip


def _kubelet_config(node: Node36, **extra: object) -> None:
    conf = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", "cgroupDriver": "systemd",
            "containerRuntimeEndpoint": "unix:///var/run/crio/crio.sock", **extra}  # fmt: skip
    node.put("/var/lib/kubelet/config.yaml", json.dumps(conf).encode())


def _kubelet_starts(node: Node36, *args: str) -> None:
    proc = subprocess.Popen([sys.executable, str(node.bin / "kubelet"), *args], env=node.env(),
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not node.path("/var/log/nodeimage-standins/kubelet-started.log").exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_kubelet_36_runs_with_the_endpoint_in_its_configuration(node: Node36) -> None:
    _kubelet_config(node)
    node.start_crio()
    _kubelet_starts(node, *KUBELET_ARGS)
    started = json.loads(node.path("/var/log/nodeimage-standins/kubelet-started.log").read_text())
    assert started["endpoint"] == "unix:///var/run/crio/crio.sock"


@pytest.mark.parametrize(
    "flag", ["--container-runtime=remote", "--pod-infra-container-image=registry.k8s.io/pause:3.10.2",
             "--network-plugin=cni"],
)  # fmt: skip
def test_kubelet_36_refuses_removed_flags(node: Node36, flag: str) -> None:
    _kubelet_config(node)
    proc = node.run("kubelet", *KUBELET_ARGS, flag)
    assert proc.returncode == 1  # component-base cli.Run, not klog.Fatal's 255
    assert f"failed to parse kubelet flag: unknown flag: {flag.split('=')[0]}" in proc.stderr, proc.stderr


def test_kubelet_36_refuses_cgroup_v1_unless_told(node: Node36) -> None:
    _kubelet_config(node)
    node.path("/sys/fs/cgroup/cgroup.controllers").unlink()
    proc = node.run("kubelet", *KUBELET_ARGS)
    assert proc.returncode == 1
    assert "kubelet is configured to not run on a host using cgroup v1" in proc.stderr
    node.start_crio()
    _kubelet_config(node, failCgroupV1=False)
    _kubelet_starts(node, *KUBELET_ARGS)


def test_kubelet_36_refuses_swap(node: Node36) -> None:
    _kubelet_config(node)
    node.put("/proc/swaps", b"Filename Type Size Used Priority\n/swapfile file 1024 0 -2\n")
    proc = node.run("kubelet", *KUBELET_ARGS)
    assert proc.returncode == 1 and "running with swap on is not supported" in proc.stderr


def test_kubelet_36_without_the_endpoint_looks_for_containerd(node: Node36) -> None:
    conf = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", "cgroupDriver": "systemd"}
    node.put("/var/lib/kubelet/config.yaml", json.dumps(conf).encode())
    node.start_crio()
    proc = node.run("kubelet", *KUBELET_ARGS, NODEIMAGE_STANDIN_CRI_WAIT="0.2")
    assert proc.returncode == 1
    assert 'validate CRI v1 runtime API for endpoint \\"unix:///run/containerd/containerd.sock\\"' in proc.stderr


# --- kubeadm (kubernetes v1.36) ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The kubeadm configuration a control plane's seed for the current stack writes (nodeimage.seed, which
    renders the stack's documents)."""
    from nodeimage import seed, seedrender

    k8s = {"kubernetes_version": "v1.36.4", "pod_cidr": "10.244.0.0/16", "service_cidr": "10.96.0.0/12"}
    cp = seed.NodeSpec(role="control-plane", name="cp", ip="192.168.100.10")
    iso = seed.seed_node(cluster="r36", node=cp, state_dir=tmp_path_factory.mktemp("state36"), **k8s)
    files = {f["path"]: f["content"] for f in yaml.safe_load((iso.parent / "user-data").read_text())["write_files"]}
    return files[seedrender.KUBEADM_CONFIG]


def _init(node: Node36, text: str) -> subprocess.CompletedProcess[str]:
    node.put("/etc/nodeimage/kubeadm/kubeadm.yaml", text.encode(), 0o600)
    return node.run("kubeadm", "init", "--config", "/etc/nodeimage/kubeadm/kubeadm.yaml")


def test_kubeadm_36_init_preflight_passes_on_the_image_and_fails_at_the_first_pull(node: Node36, seeded: str) -> None:
    node.start_crio()
    (node.bin / "crictl").unlink()  # kubeadm 1.36 talks to the CRI itself: crictl is no longer needed
    proc = _init(node, seeded)
    pull = "[ERROR ImagePull]: failed to pull image registry.k8s.io/kube-apiserver:v1.36.4"
    assert proc.returncode == 1 and pull in proc.stderr, proc.stderr
    assert "[ERROR" not in proc.stderr.replace("[ERROR ImagePull]", "")
    assert "deprecated API spec" not in proc.stderr and "without URL scheme" not in proc.stderr


PREFLIGHT_36 = [
    ("ip_forward", lambda n: n.put("/proc/sys/net/ipv4/ip_forward", b"0\n"),
     "[ERROR FileContent--proc-sys-net-ipv4-ip_forward]: /proc/sys/net/ipv4/ip_forward contents are not set to 1"),
    # only the node's own PATH: this machine's /usr/sbin has a losetup
    ("losetup missing", lambda n: ((n.tools / "losetup").unlink(), {"PATH": f"{n.bin}:{n.tools}"})[1],
     "[ERROR FileExisting-losetup]: losetup not found in system path"),
    ("cgroup v1 host", lambda n: n.path("/sys/fs/cgroup/cgroup.controllers").unlink(),
     "[ERROR SystemVerification]: cgroups v1 support is deprecated and will be removed in a future release"),
    ("pids controller missing", lambda n: n.put("/sys/fs/cgroup/cgroup.controllers", b"cpuset cpu io memory\n"),
     "[ERROR SystemVerification]: missing required cgroups: pids"),
    ("too little memory", lambda n: n.put("/proc/meminfo", b"MemTotal:        1536000 kB\n"),
     "[ERROR Mem]: the system RAM (1500 MB) is less than the minimum 1700 MB"),
    ("crio not running", None, "[ERROR CRI]: could not connect to the container runtime"),
    ("manifests left over", lambda n: n.put("/etc/kubernetes/manifests/kube-apiserver.yaml", b""),
     "[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "breakit", "message"), PREFLIGHT_36, ids=[b[0] for b in PREFLIGHT_36])
def test_kubeadm_36_preflight_refuses(node: Node36, what: str, breakit, message: str, seeded: str) -> None:
    env = {}
    if breakit is not None:
        node.start_crio()
        out = breakit(node)
        env = out if isinstance(out, dict) else {}
    node.put("/etc/nodeimage/kubeadm/kubeadm.yaml", seeded.encode(), 0o600)
    proc = node.run("kubeadm", "init", "--config", "/etc/nodeimage/kubeadm/kubeadm.yaml", **env)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr


def test_kubeadm_36_swap_is_only_a_warning(node: Node36, seeded: str) -> None:
    node.start_crio()
    node.put("/proc/swaps", b"Filename Type Size Used Priority\n/swapfile file 1 0 -2\n")
    proc = _init(node, seeded)
    assert "[WARNING Swap]" in proc.stderr and "[ERROR Swap]" not in proc.stderr


def test_kubeadm_36_refuses_a_kubelet_too_old(node: Node36, seeded: str) -> None:
    node.start_crio()
    (node.bin / "kubelet").write_text("#!/bin/sh\necho Kubernetes v1.32.0\n")
    proc = _init(node, seeded)
    assert "[ERROR KubeletVersion]: kubelet Kubernetes v1.32.0 is not a supported version skew" in proc.stderr


V1BETA3 = """apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
nodeRegistration: {name: cp, criSocket: unix:///var/run/crio/crio.sock, kubeletExtraArgs: {node-ip: 192.168.100.10}}
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
kubernetesVersion: v1.36.4
networking: {podSubnet: 10.244.0.0/16}
"""


def _swap(docs: str, old: str, new: str) -> str:
    assert old in docs, old
    return docs.replace(old, new, 1)


CONFIG_36 = [
    ("unknown field", lambda d: _swap(d, "bindPort: 6443", "bindPort: 6443\n  port: 1"),
     "InitConfiguration has fields kubeadm.k8s.io/v1beta4 does not have: localAPIEndpoint.port"),
    ("v1beta3 field", lambda d: _swap(d, "certSANs:", "timeoutForControlPlane: 4m0s\n  certSANs:"),
     "ClusterConfiguration has fields kubeadm.k8s.io/v1beta4 does not have: apiServer.timeoutForControlPlane"),
    ("map-form kubeletExtraArgs", lambda d: _swap(d, "kubeletExtraArgs:\n  - name: node-ip\n    value:",
                                                  "kubeletExtraArgs:\n    node-ip:"),
     "nodeRegistration.kubeletExtraArgs (expected a list)"),
    ("v1beta2", lambda d: d.replace("kubeadm.k8s.io/v1beta4", "kubeadm.k8s.io/v1beta2"),
     'your configuration file uses an old API spec: "kubeadm.k8s.io/v1beta2" (kind: "InitConfiguration"). Please '
     "use kubeadm v1.22 instead"),
    ("v1beta4 field in v1beta3", lambda d: V1BETA3.replace("kubernetesVersion", "encryptionAlgorithm: RSA-2048\n"
                                                             "kubernetesVersion"),
     "ClusterConfiguration has fields kubeadm.k8s.io/v1beta3 does not have: encryptionAlgorithm"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "mutate", "message"), CONFIG_36, ids=[c[0] for c in CONFIG_36])
def test_kubeadm_36_takes_only_v1beta4_and_v1beta3_fields(
    node: Node36, what: str, mutate, message: str, seeded: str
) -> None:
    proc = _init(node, mutate(seeded))
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr


def test_kubeadm_36_reads_v1beta3_with_a_deprecation_warning(node: Node36) -> None:
    node.start_crio()
    proc = _init(node, V1BETA3)
    assert 'uses a deprecated API spec: "kubeadm.k8s.io/v1beta3" (kind: "InitConfiguration")' in proc.stderr
    assert "[ERROR ImagePull]" in proc.stderr  # read, checked, and on to the pulls


def test_kubeadm_36_warns_about_a_socket_path_without_scheme(node: Node36, seeded: str) -> None:
    node.start_crio()
    proc = _init(node, seeded.replace("criSocket: unix:///var/run/crio/crio.sock",
                                           "criSocket: /var/run/crio/crio.sock"))  # fmt: skip
    assert "Usage of CRI endpoints without URL scheme is deprecated" in proc.stderr


def test_kubeadm_36_writes_the_endpoint_into_the_kubelet_configuration(node: Node36, seeded: str) -> None:
    """NodeLocalCRISocket (GA in 1.36): no --container-runtime-endpoint flag; instance-config.yaml has it."""
    refs = node.run("kubeadm", "config", "images", "list").stdout.split()
    baked = [{"id": f"{i:064x}", "names": [ref]} for i, ref in enumerate(refs)]  # as if the build had baked them
    node.put("/var/lib/containers/storage/overlay-images/images.json", json.dumps(baked).encode())
    node.start_crio()
    proc = _init(node, seeded)
    assert "[ERROR" not in proc.stderr, proc.stderr
    flags = node.path("/var/lib/kubelet/kubeadm-flags.env").read_text()
    assert "container-runtime" not in flags and "--node-ip=192.168.100.10" in flags
    instance = json.loads(node.path("/var/lib/kubelet/instance-config.yaml").read_text())
    assert instance["containerRuntimeEndpoint"] == "unix:///var/run/crio/crio.sock"


def test_kubeadm_36_lists_the_1_36_images(node: Node36) -> None:
    out = node.run("kubeadm", "config", "images", "list", "--kubernetes-version", "v1.36.4").stdout.split()
    assert out == [
        "registry.k8s.io/kube-apiserver:v1.36.4", "registry.k8s.io/kube-controller-manager:v1.36.4",
        "registry.k8s.io/kube-scheduler:v1.36.4", "registry.k8s.io/kube-proxy:v1.36.4",
        "registry.k8s.io/coredns/coredns:v1.14.2", "registry.k8s.io/pause:3.10.2", "registry.k8s.io/etcd:3.6.8-0",
    ]  # fmt: skip
    mirror = node.run("kubeadm", "config", "images", "list", "--image-repository", "mirror.example").stdout.split()
    assert "mirror.example/coredns:v1.14.2" in mirror  # GetDNSImage: coredns/ only in the default repository


# --- kubectl (kubernetes/kubectl v0.36.3) ------------------------------------------------------------------------


def test_kubectl_36_serves_runtimeclass_v1_only_and_has_no_short_version(node: Node36) -> None:
    node.put("/etc/kubernetes/admin.conf", b"apiVersion: v1\nkind: Config\nclusters: [{name: k, cluster: {}}]\n")
    rc = json.dumps({"apiVersion": "node.k8s.io/v1beta1", "kind": "RuntimeClass", "metadata": {"name": "kata"},
                     "handler": "kata-qemu"})  # fmt: skip
    conf = ["--kubeconfig", "/etc/kubernetes/admin.conf"]
    proc = node.run("kubectl", *conf, "apply", "-f", "-", stdin=rc)
    assert proc.returncode == 1 and 'no matches for kind "RuntimeClass" in version "node.k8s.io/v1beta1"' in proc.stderr
    assert node.run("kubectl", *conf, "apply", "-f", "-", stdin=rc.replace("v1beta1", "v1")).returncode == 0
    assert node.run("kubectl", "version", "--client", "--short").returncode == 1
    assert node.run("kubectl", "version", "--client").stdout.splitlines() == [
        "Client Version: v1.36.4", "Kustomize Version: v5.8.1"]  # fmt: skip


# --- kata-runtime check (kata-containers 3.32.0) -----------------------------------------------------------------


INTEL = b"processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vmx lm sse4_1 hypervisor\n\n"


def _capable(node: Node36, modules: tuple[str, ...] = ("kvm", "kvm_intel", "vhost", "vhost_net", "vhost_vsock")):
    node.put("/proc/cpuinfo", INTEL)
    for m in modules:
        node.path(f"/sys/module/{m}").mkdir(parents=True, exist_ok=True)
    node.put("/dev/kvm", b"")
    node.put("/dev/vhost-vsock", b"")


@pytest.mark.parametrize("command", [["check"], ["kata-check"]])
def test_kata_3_check_passes_with_the_bundle_configuration(node: Node36, command: list[str]) -> None:
    """The image's configuration.toml -> configuration-qemu.toml of the 3.32.0 bundle; "kata-check" is an alias."""
    _capable(node)
    proc = node.run("kata-runtime", *command, "--no-network-checks")
    assert proc.returncode == 0 and proc.stdout.startswith("System is capable of running Kata Containers"), proc.stderr


KATA_3_BREAKS = [
    ("no vhost-vsock", lambda n: n.path("/dev/vhost-vsock").unlink(),
     "host system doesn't support vsock: stat /dev/vhost-vsock: no such file or directory"),
    ("kernel missing", lambda n: n.path("/opt/kata/share/kata-containers/vmlinux.container").unlink(),
     "file /opt/kata/share/kata-containers/vmlinux.container does not exist"),
    ("bad drop-in", lambda n: n.put("/opt/kata/share/defaults/kata-containers/config.d/10-x.toml", b"[x\n"),
     "error decoding file"),
    ("unknown hypervisor in a drop-in", lambda n: n.put(
        "/opt/kata/share/defaults/kata-containers/config.d/10-x.toml", b'[hypervisor.kvmtool]\npath = "/x"\n'),
     'configuration file contains invalid hypervisor section: "kvmtool"'),
    ("virtio-fs without its daemon", lambda n: edit(
        n.path("/opt/kata/share/defaults/kata-containers/configuration-qemu.toml"),
        'virtio_fs_daemon = "/opt/kata/libexec/virtiofsd"', 'virtio_fs_daemon = ""'),
     "cannot enable virtio-fs without daemon path in configuration file"),
    ("no vhost_net", lambda n: shutil.rmtree(n.path("/sys/module/vhost_net")),
     "ERROR: System is not capable of running Kata Containers"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "breakit", "message"), KATA_3_BREAKS, ids=[b[0] for b in KATA_3_BREAKS])
def test_kata_3_check_refuses(node: Node36, what: str, breakit, message: str) -> None:
    _capable(node)
    breakit(node)
    proc = node.run("kata-runtime", "check", "--no-network-checks")
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr


def test_kata_3_as_non_root_queries_github_and_loads_no_module(node: Node36) -> None:
    _capable(node, modules=("kvm", "kvm_intel", "vhost", "vhost_vsock"))
    networked = node.run("kata-runtime", "check", NODEIMAGE_STANDIN_EUID="1000")
    assert networked.returncode == 1
    assert "api.github.com/repos/kata-containers/kata-containers/releases" in networked.stderr
    proc = node.run("kata-runtime", "check", "--no-network-checks", NODEIMAGE_STANDIN_EUID="1000")
    assert proc.returncode == 1 and "Module is not loaded and it can not be inserted" in proc.stderr


def test_kata_3_takes_the_config_flag(node: Node36) -> None:
    _capable(node)
    config = "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml"
    assert node.run("kata-runtime", "--config", config, "check", "--no-network-checks").returncode == 0
    missing = node.run("kata-runtime", "--config", "/etc/kata-containers/nope.toml", "check")
    assert missing.returncode == 1 and "Cannot find usable config file" in missing.stderr


# --- versions and layouts of the current stack's stand-ins ---------------------------------------------------------


VERSIONS_36 = [
    ("kubelet", ["--version"], "Kubernetes v1.36.4"),
    ("kubeadm", ["version", "-o", "short"], "v1.36.4"),
    ("crictl", ["--version"], "crictl version v1.36.0"),
    ("crio", ["--version"], "crio version 1.36.3"),
    ("kata-runtime", ["--version"], "kata-runtime  : 3.32.0"),
]


@pytest.mark.parametrize(("tool", "args", "line"), VERSIONS_36, ids=[v[0] for v in VERSIONS_36])
def test_versions_in_the_real_format(node: Node36, tool: str, args: list[str], line: str) -> None:
    proc = node.run(tool, *args)
    assert proc.returncode == 0 and proc.stdout.splitlines()[0] == line, proc.stdout + proc.stderr


def test_bundled_conmon_answers_what_crio_1_36_parses(node: Node36) -> None:
    """cri-o/packaging templates/latest/cri-o/bundle/versions: conmon v2.2.1 in the bundle."""
    proc = subprocess.run([sys.executable, str(node.path("/usr/libexec/crio/conmon")), "--version"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.stdout.split()[:3] == ["conmon", "version", "2.2.1"]


def _names(stage: Path, artifact: str) -> dict[str, tarfile.TarInfo]:
    with _tar(stage / "stack" / "artifacts" / artifact) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_crio_bundle_layout(staged: Path) -> None:
    """cri-o/packaging scripts/bundle/build: `tar cfz ... cri-o`, everything under cri-o/."""
    names = _names(staged, "cri-o.amd64.v1.36.3.tar.gz")
    assert all(n == "cri-o" or n.startswith("cri-o/") for n in names)
    for rel in ("bin/crio", "bin/pinns", "bin/conmon", "bin/conmonrs", "bin/crun", "bin/runc", "bin/crictl",
                "bin/crio-credential-provider", "cni-plugins/portmap", "etc/10-crio.conf", "etc/crictl.yaml",
                "etc/crio-umount.conf", "etc/crio", "contrib/crio.service", "contrib/policy.json",
                "contrib/registries.conf", "contrib/10-crio-bridge.conflist.disabled", "man/crio.conf.d.5",
                "Makefile", "README.md", "install", "LICENSE"):  # fmt: skip
        assert f"cri-o/{rel}" in names, rel
    assert names["cri-o/bin/crio"].mode == 0o755 and names["cri-o/install"].mode == 0o755


def test_kata_3_bundle_layout(staged: Path) -> None:
    """kata-deploy-merge-builds.sh: ./opt/kata/..., zstd; configuration.toml links configuration-qemu.toml."""
    data = (staged / "stack/artifacts/kata-static-3.32.0-amd64.tar.zst").read_bytes()
    assert data[:4] == b"\x28\xb5\x2f\xfd"  # the zstd frame magic
    names = _names(staged, "kata-static-3.32.0-amd64.tar.zst")
    assert all(n in (".", "./opt", "./opt/kata") or n.startswith("./opt/kata/") for n in names)
    for rel in ("bin/kata-runtime", "bin/containerd-shim-kata-v2", "bin/qemu-system-x86_64", "libexec/virtiofsd",
                "runtime-rs/bin/containerd-shim-kata-v2", "share/defaults/kata-containers/configuration-qemu.toml",
                "VERSION"):  # fmt: skip
        assert f"./opt/kata/{rel}" in names, rel
    link = names["./opt/kata/share/defaults/kata-containers/configuration.toml"]
    assert link.issym() and link.linkname == "configuration-qemu.toml"
    assert names["./opt/kata/share/kata-containers/vmlinux.container"].issym()


def test_cni_plugins_1_layout(staged: Path) -> None:
    names = _names(staged, "cni-plugins-linux-amd64-v1.9.1.tgz")
    files = sorted(n for n, m in names.items() if m.isfile())
    assert files == sorted([f"./{p}" for p in ms.CNI_PLUGINS_1] + ["./README.md", "./LICENSE"])
    assert "./flannel" not in files and "./vrf" in files


def test_a_repository_at_two_tags_keeps_both_stand_in_images(tmp_path: Path) -> None:
    """kube-apiserver is locked at v1.17.17 and v1.36.4: the one OCI layout of the repository holds both tags (the
    classic and the current e2e push both to the same registry)."""
    layout = tmp_path / "registry.k8s.io" / "kube-apiserver"
    first = ms.standin_image("registry.k8s.io/kube-apiserver:v1.17.17", layout)
    second = ms.standin_image("registry.k8s.io/kube-apiserver:v1.36.4", layout)
    index = json.loads((layout / "index.json").read_text())
    tags = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert tags == ["v1.17.17", "v1.36.4"] and first != second
    for platforms in (first, second):
        for digest, _ in platforms.values():
            assert (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).is_file()
