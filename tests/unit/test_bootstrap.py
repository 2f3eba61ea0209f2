"""provision/files/nodeimage-bootstrap run on this machine against a scratch root and stub tools.

The program honours NODEIMAGE_BOOTSTRAP_ROOT for every path it touches, and
finds kubeadm/kubectl/kata-runtime on PATH, so each test gives it a fake node:
a listening CRI-O socket, the files cloud-init would have written, stub tools
that record their argv and stdin, and (for workers) a listening "API server".
Runs with every Python the machine has among 3.8 (Ubuntu 20.04) and the current one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROGRAM = REPO / "provision" / "files" / "nodeimage-bootstrap"
TOKEN = "abcdef.0123456789abcdef"
POD_CIDR = "10.244.0.0/16"


def _pythons() -> list[str]:
    found = [sys.executable]
    candidates = sorted(Path.home().glob(".pyenv/versions/3.8*/bin/python3.8"))
    system = shutil.which("python3.8")
    if system and "shims" not in system:
        candidates.insert(0, Path(system))
    if candidates:
        found.append(str(candidates[0]))
    return found


PYTHONS = _pythons()

STUB = """#!/bin/sh
# test stub: record argv (and stdin for `apply -f -`), then behave as told by $STUB_{name}_RC; with
# $STUB_{var}_FAILS=N the first N calls of `init`/`join` fail. `kubeadm reset` empties /etc/kubernetes/pki
# as the real one does, and `kubeadm init` fails without the cluster CA there.
printf '%s\\n' "$*" >> "{log_dir}/{name}.argv"
case "$*" in *"-f -"*) cat > "{log_dir}/{name}.stdin.$(date +%s%N)";; esac
case "$1" in
  reset) rm -rf "{root}/etc/kubernetes/pki"; exit 0;;
  init|join)
    n=$(cat "{log_dir}/{name}.tries" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "{log_dir}/{name}.tries"
    if [ "$n" -le "${{STUB_{var}_FAILS:-0}}" ]; then echo "attempt $n fails"; exit 1; fi
    if [ "$1" = init ] && [ ! -f "{root}/etc/kubernetes/pki/ca.key" ]; then echo "no CA"; exit 9; fi;;
esac
case "$1" in init) mkdir -p "{root}/etc/kubernetes" && echo 'kind: Config' > "{root}/etc/kubernetes/admin.conf";; esac
echo "kubeadm join 192.168.100.10:6443 --token {token} --discovery-token-ca-cert-hash sha256:00"
exit ${{STUB_{var}_RC:-0}}
"""


class Node:
    def __init__(self, root: Path, role: str) -> None:
        self.root = root
        self.role = role
        self.bin = root.parent / "bin"
        self.logs = root.parent / "calls"
        path = f"{self.bin}:/usr/bin:/bin"
        self.env = dict(os.environ, NODEIMAGE_BOOTSTRAP_ROOT=str(root), PATH=path, NODEIMAGE_RETRY_SECONDS="0")

    def run(self, *, python: str = sys.executable, role: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, str(PROGRAM), role or self.role], env=self.env, capture_output=True, text=True, timeout=120
        )

    def calls(self, tool: str) -> list[str]:
        path = self.logs / f"{tool}.argv"
        return path.read_text().splitlines() if path.exists() else []

    def applied(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.logs.glob("kubectl.stdin.*"))]

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")


@pytest.fixture
def api_server() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def _make_node(tmp_path: Path, role: str, api_port: int = 1) -> Iterator[Node]:
    root = tmp_path / "root"
    node = Node(root, role)
    node.bin.mkdir(parents=True)
    node.logs.mkdir()
    for name in ("kubeadm", "kubectl", "kata-runtime"):
        stub = node.bin / name
        var = name.replace("-", "_").upper()
        stub.write_text(STUB.format(name=name, var=var, log_dir=node.logs, root=root, token=TOKEN))
        stub.chmod(0o755)
    node.env["STUB_KATA_RUNTIME_RC"] = "1"  # like a node without usable KVM
    params = {
        "role": role,
        "node_name": "cp" if role == "control-plane" else "w1",
        "node_ip": "192.168.100.10",
        "cluster": "demo",
        "api_endpoint": f"127.0.0.1:{api_port}",
        "pod_cidr": POD_CIDR,
        "kubeadm_config": "/etc/nodeimage/kubeadm/kubeadm.yaml",
        "kubeadm_config_kata": "/etc/nodeimage/kubeadm/kubeadm-kata.yaml",
        "api_wait_seconds": 1,
        "crio_wait_seconds": 1,
    }
    node.path("/etc/nodeimage").mkdir(parents=True)
    node.path("/etc/nodeimage/bootstrap.json").write_text(json.dumps(params))
    node.path("/etc/nodeimage/kubeadm").mkdir(parents=True)
    node.path("/etc/nodeimage/kubeadm/kubeadm.yaml").write_text(f"plain config with {TOKEN}\n")
    node.path("/etc/nodeimage/kubeadm/kubeadm-kata.yaml").write_text(f"kata config with {TOKEN}\n")
    if role == "control-plane":
        node.path("/etc/nodeimage/pki").mkdir(parents=True)
        node.path("/etc/nodeimage/pki/ca.crt").write_text("CA CERT\n")
        node.path("/etc/nodeimage/pki/ca.key").write_text("CA KEY\n")
    share = node.path("/usr/local/share/nodeimage")
    share.mkdir(parents=True)
    weave = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"kind": "ServiceAccount", "metadata": {"name": "weave-net"}},
            {
                "kind": "DaemonSet",
                "metadata": {"name": "weave-net"},
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": "weave", "env": [{"name": "HOSTNAME", "value": "x"}]},
                                {"name": "weave-npc", "env": []},
                            ]
                        }
                    }
                },
            },
        ],
    }
    (share / "cni-manifest.json").write_text(json.dumps(weave))
    runtime_class = {
        "apiVersion": "node.k8s.io/v1beta1", "kind": "RuntimeClass", "metadata": {"name": "kata"},
        "handler": "kata-runtime", "scheduling": {"nodeSelector": {"katacontainers.io/kata-runtime": "true"}},
    }  # fmt: skip
    stack = {
        "stack": "k8s-1.17", "kubernetes_version": "v1.17.17", "runtime_class": runtime_class,
        "cni": {"name": "weave", "manifest": "/usr/local/share/nodeimage/cni-manifest.json",
                "pod_cidr": {"method": "container-env", "kind": "DaemonSet", "object": "weave-net",
                             "container": "weave", "name": "IPALLOC_RANGE"}},
    }  # fmt: skip
    (share / "stack.json").write_text(json.dumps(stack))
    crio = node.path("/var/run/crio")
    crio.mkdir(parents=True)
    # AF_UNIX paths are limited to 107 bytes: bind through a short relative path.
    cwd = os.getcwd()
    os.chdir(crio)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind("crio.sock")
    finally:
        os.chdir(cwd)
    sock.listen(8)
    try:
        yield node
    finally:
        sock.close()


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[Node]:
    yield from _make_node(tmp_path, "control-plane")


@pytest.fixture
def worker(tmp_path: Path, api_server: int) -> Iterator[Node]:
    yield from _make_node(tmp_path, "worker", api_port=api_server)


@pytest.mark.parametrize("python", PYTHONS)
def test_control_plane_bootstrap(control_plane: Node, python: str) -> None:
    proc = control_plane.run(python=python)
    assert proc.returncode == 0, proc.stderr
    assert control_plane.calls("kata-runtime") == ["kata-check --no-network-checks"]
    config = control_plane.path("/etc/nodeimage/kubeadm/kubeadm.yaml")
    assert control_plane.calls("kubeadm") == [f"init --config {config}"]
    # the cluster's CA went where kubeadm init uses it, and no second copy of the key stays
    assert control_plane.path("/etc/kubernetes/pki/ca.key").read_text() == "CA KEY\n"
    assert stat.S_IMODE(control_plane.path("/etc/kubernetes/pki/ca.key").stat().st_mode) == 0o600
    assert not control_plane.path("/etc/nodeimage/pki/ca.key").exists()
    assert stat.S_IMODE(control_plane.path("/root/.kube/config").stat().st_mode) == 0o600
    weave, runtime_class = control_plane.applied()
    daemonset = next(i for i in weave["items"] if i["kind"] == "DaemonSet")
    env = daemonset["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "IPALLOC_RANGE", "value": POD_CIDR} in env
    assert {"name": "HOSTNAME", "value": "x"} in env
    assert runtime_class == {
        "apiVersion": "node.k8s.io/v1beta1",
        "kind": "RuntimeClass",
        "metadata": {"name": "kata"},
        "handler": "kata-runtime",
        "scheduling": {"nodeSelector": {"katacontainers.io/kata-runtime": "true"}},
    }
    assert control_plane.path("/run/nodeimage/bootstrap-success.complete").is_file()
    assert control_plane.path("/var/lib/nodeimage/bootstrap.done").is_file()
    assert not control_plane.path("/run/nodeimage/bootstrap-failure").exists()
    log = control_plane.path("/var/log/nodeimage-bootstrap.log")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert TOKEN not in log.read_text() + proc.stderr, "the bootstrap token leaked into the log"
    assert "step kubeadm-init: ok" in log.read_text()


def test_kata_capable_node_uses_the_labelled_config(control_plane: Node) -> None:
    control_plane.env["STUB_KATA_RUNTIME_RC"] = "0"
    assert control_plane.run().returncode == 0
    kata = control_plane.path("/etc/nodeimage/kubeadm/kubeadm-kata.yaml")
    assert control_plane.calls("kubeadm") == [f"init --config {kata}"]
    assert control_plane.path("/var/lib/nodeimage/kata-capable").read_text() == "true\n"


def test_failure_names_the_step_and_a_rerun_resumes(control_plane: Node) -> None:
    # (a failing kubectl is retried 6 times 10 s apart; a missing manifest fails the cni step at once)
    manifest = control_plane.path("/usr/local/share/nodeimage/cni-manifest.json")
    saved = manifest.read_text()
    manifest.unlink()
    proc = control_plane.run()
    assert proc.returncode == 1
    failure = control_plane.path("/run/nodeimage/bootstrap-failure").read_text()
    assert "step: cni" in failure
    assert "log: " in failure
    assert not control_plane.path("/run/nodeimage/bootstrap-success.complete").exists()
    assert not control_plane.path("/var/lib/nodeimage/bootstrap.done").exists()
    assert len(control_plane.calls("kubeadm")) == 1
    # fixed: the re-run skips kubeadm init (already done) and finishes
    manifest.write_text(saved)
    assert control_plane.run().returncode == 0
    assert len(control_plane.calls("kubeadm")) == 1
    assert not control_plane.path("/run/nodeimage/bootstrap-failure").exists()
    assert control_plane.path("/run/nodeimage/bootstrap-success.complete").is_file()


def test_kubeadm_failure_is_reported_after_bounded_retries(control_plane: Node) -> None:
    control_plane.env["STUB_KUBEADM_RC"] = "3"
    assert control_plane.run().returncode == 1
    failure = control_plane.path("/run/nodeimage/bootstrap-failure").read_text()
    assert "step: kubeadm-init" in failure and "failed 3 times (exit code 3)" in failure
    assert control_plane.applied() == []
    verbs = [c.split()[0] for c in control_plane.calls("kubeadm")]
    assert verbs == ["init", "reset", "init", "reset", "init"]


def test_a_failed_init_is_reset_and_retried_with_the_cluster_ca(control_plane: Node) -> None:
    """kubeadm reset empties /etc/kubernetes/pki: the retry puts the seed's CA back, so workers' CA hash holds."""
    control_plane.env["STUB_KUBEADM_FAILS"] = "1"
    proc = control_plane.run()
    assert proc.returncode == 0, proc.stderr
    assert [c.split()[0] for c in control_plane.calls("kubeadm")] == ["init", "reset", "init"]
    assert "--cri-socket /var/run/crio/crio.sock" in control_plane.calls("kubeadm")[1]
    assert control_plane.path("/etc/kubernetes/pki/ca.key").read_text() == "CA KEY\n"


def test_a_run_after_an_interrupted_init_resets_first(control_plane: Node) -> None:
    """As after a reboot in the middle of kubeadm init: the attempt mark survives under /var/lib."""
    control_plane.path("/var/lib/nodeimage").mkdir(parents=True)
    control_plane.path("/var/lib/nodeimage/kubeadm-attempted").write_text("init\n")
    assert control_plane.run().returncode == 0
    assert [c.split()[0] for c in control_plane.calls("kubeadm")] == ["reset", "init"]


def test_rerun_on_an_initialised_node_does_nothing(control_plane: Node) -> None:
    assert control_plane.run().returncode == 0
    control_plane.path("/run/nodeimage/bootstrap-success.complete").unlink()  # as after a reboot (/run is tmpfs)
    assert control_plane.run().returncode == 0
    assert len(control_plane.calls("kubeadm")) == 1
    assert len(control_plane.applied()) == 2
    assert control_plane.path("/run/nodeimage/bootstrap-success.complete").is_file()


def test_wrong_role_fails_at_params(control_plane: Node) -> None:
    assert control_plane.run(role="worker").returncode == 1
    assert "step: params" in control_plane.path("/run/nodeimage/bootstrap-failure").read_text()
    assert control_plane.calls("kubeadm") == []


def test_usage_error_for_an_unknown_role(control_plane: Node) -> None:
    assert control_plane.run(role="master").returncode == 2


@pytest.mark.parametrize("python", PYTHONS)
def test_worker_waits_for_the_api_then_joins(worker: Node, python: str) -> None:
    proc = worker.run(python=python)
    assert proc.returncode == 0, proc.stderr
    assert worker.calls("kubeadm") == [f"join --config {worker.path('/etc/nodeimage/kubeadm/kubeadm.yaml')}"]
    assert worker.calls("kubectl") == []
    assert worker.path("/run/nodeimage/bootstrap-success.complete").is_file()
    assert "accepts connections" in worker.path("/var/log/nodeimage-bootstrap.log").read_text()


def test_worker_gives_up_on_an_unreachable_api(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    for node in _make_node(tmp_path, "worker", api_port=closed_port):
        assert node.run().returncode == 1
        failure = node.path("/run/nodeimage/bootstrap-failure").read_text()
        assert "step: wait-api" in failure and "unreachable" in failure
        assert node.calls("kubeadm") == []


def test_missing_crio_socket_fails_at_wait_crio(worker: Node) -> None:
    worker.path("/var/run/crio/crio.sock").unlink()
    assert worker.run().returncode == 1
    assert "step: wait-crio" in worker.path("/run/nodeimage/bootstrap-failure").read_text()
