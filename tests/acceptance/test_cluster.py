"""Cluster layer: a real cluster made by first boot works (nodes Ready, Weave, runc and Kata pods).

Needs an admin kubeconfig (``invoke acceptance --kubeconfig FILE``, passed to
pytest as NODEIMAGE_KUBECONFIG), kubectl on this machine, and the real
upstream binaries on the nodes: with test stand-ins there is no Kubernetes to
ask, so the layer is skipped with that reason. The process-table check also
needs SSH to the nodes (testinfra ``--hosts``): the Kata pod runs in its own
VM, so its process must not be visible on its node, while the runc pod's is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import testinfra

pytestmark = [pytest.mark.cluster, pytest.mark.needs_upstream, pytest.mark.booted_only]

POD_TIMEOUT_S = 600
IMAGE = "docker.io/library/busybox:1.36"
KATA_LABEL = "katacontainers.io/kata-runtime"


@pytest.fixture(scope="module")
def kubeconfig() -> Path:
    value = os.environ.get("NODEIMAGE_KUBECONFIG")
    if not value:
        pytest.skip("no kubeconfig: pass `invoke acceptance --kubeconfig FILE` to run the cluster layer")
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed on this machine")
    path = Path(value)
    if not path.is_file():
        pytest.fail(f"kubeconfig not found: {path}")
    return path


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def kubectl_json(kubeconfig: Path, *args: str) -> dict:
    return json.loads(kubectl(kubeconfig, *args, "-o", "json"))


@pytest.fixture(scope="module")
def node_hosts(pytestconfig: pytest.Config) -> dict[str, Any]:
    """testinfra hosts of the nodes, by hostname (= Kubernetes node name)."""
    spec = pytestconfig.getoption("hosts", default=None)
    if not spec:
        return {}
    opt = pytestconfig.option
    hosts = testinfra.get_hosts(
        spec.split(","),
        connection=opt.connection,
        ssh_config=opt.ssh_config,
        ssh_identity_file=opt.ssh_identity_file,
        sudo=opt.sudo,
    )
    return {h.check_output("hostname"): h for h in hosts}


def test_all_nodes_ready(kubeconfig: Path) -> None:
    nodes = kubectl_json(kubeconfig, "get", "nodes")["items"]
    assert nodes
    for node in nodes:
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", f"{node['metadata']['name']}: {ready.get('message')}"


def test_weave_pods_running_on_every_node(kubeconfig: Path) -> None:
    nodes = {n["metadata"]["name"] for n in kubectl_json(kubeconfig, "get", "nodes")["items"]}
    pods = kubectl_json(kubeconfig, "-n", "kube-system", "get", "pods", "-l", "name=weave-net")["items"]
    assert {p["spec"]["nodeName"] for p in pods} == nodes
    for pod in pods:
        assert pod["status"]["phase"] == "Running", pod["metadata"]["name"]


def _pod(name: str, marker: str, runtime_class: str | None) -> dict:
    spec: dict = {
        "containers": [{"name": "sleep", "image": IMAGE, "command": ["sleep", marker]}],
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
    }
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


@pytest.fixture(scope="module")
def pods(kubeconfig: Path) -> Iterator[dict[str, dict]]:
    """A runc pod and a kata pod, each sleeping for a unique number of seconds (to find its process)."""
    kata_nodes = kubectl(kubeconfig, "get", "nodes", "-l", f"{KATA_LABEL}=true", "-o", "name").split()
    if not kata_nodes:
        pytest.skip(f"no node is labelled {KATA_LABEL}=true (kata-check failed on every node): no Kata pod can run")
    ns = f"nodeimage-acceptance-{uuid.uuid4().hex[:8]}"
    kubectl(kubeconfig, "create", "namespace", ns)
    markers = {"runc": str(3_000_000 + os.getpid() % 100_000), "kata": str(4_000_000 + os.getpid() % 100_000)}
    try:
        for kind, marker in markers.items():
            manifest = _pod(f"{kind}-pod", marker, "kata" if kind == "kata" else None)
            kubectl(kubeconfig, "-n", ns, "apply", "-f", "-", stdin=json.dumps(manifest))
        deadline = time.monotonic() + POD_TIMEOUT_S
        result: dict[str, dict] = {}
        while time.monotonic() < deadline:
            result = {k: kubectl_json(kubeconfig, "-n", ns, "get", "pod", f"{k}-pod") for k in markers}
            if all(p["status"].get("phase") == "Running" for p in result.values()):
                break
            time.sleep(5)
        for pod in result.values():
            pod["marker"] = markers["kata" if pod["metadata"]["name"] == "kata-pod" else "runc"]
        yield result
    finally:
        kubectl(kubeconfig, "delete", "namespace", ns, "--wait=false", check=False)


@pytest.mark.parametrize("kind", ["runc", "kata"])
def test_pod_running(pods: dict[str, dict], kind: str) -> None:
    pod = pods[kind]
    assert pod["status"].get("phase") == "Running", json.dumps(pod["status"], indent=1)[:2000]


def test_kata_pod_runs_on_a_kata_node(kubeconfig: Path, pods: dict[str, dict]) -> None:
    node = kubectl_json(kubeconfig, "get", "node", pods["kata"]["spec"]["nodeName"])
    assert node["metadata"]["labels"].get(KATA_LABEL) == "true"


@pytest.mark.parametrize(("kind", "visible"), [("runc", True), ("kata", False)])
def test_process_visibility_on_the_node(
    pods: dict[str, dict], node_hosts: dict[str, Any], kind: str, visible: bool
) -> None:
    """A runc container is a process of its node; a Kata container lives inside a VM and is not."""
    pod = pods[kind]
    node = pod["spec"]["nodeName"]
    if node not in node_hosts:
        pytest.skip(f"no SSH access to node {node} (give it in --hosts)")
    found = node_hosts[node].run("pgrep -f -x %s", f"sleep {pod['marker']}")
    assert (found.rc == 0) == visible, f"sleep {pod['marker']} {'not ' if visible else ''}in {node}'s process table"
