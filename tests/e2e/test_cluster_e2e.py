"""End to end: a control plane and a worker boot from the e2e image with their seeds and bootstrap.

The image is the e2e build (Debian 12 base, stand-in upstream binaries), so
kubeadm and kubectl are stand-ins that check what the real ones check and
record what they were asked: this proves seeds, cloud-init, the bootstrap
program, the baked images and the private network, not Kubernetes. The nodes
have no route out (qemu user networking with restrict=on): every image
kubeadm and the CNI use must already be in the image. The stand-in kubelet
serves the API server's port once kubeadm wrote its static pod, so the
worker's join has to reach the control plane across the private network. The
same first-boot acceptance layer users run on real nodes then runs on both VMs.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeimage import acceptance, cluster, clusterwait, ssh
from nodeimage.profiles import load_profile
from nodeimage.seedrender import ADMIN_USER
from tests.e2e.conftest import E2EBuild

REPO = Path(__file__).resolve().parents[2]
TwoNodes = tuple[cluster.ClusterState, Path]  # the running cluster and its state directory
PROFILE = "k8s-1.17-debian12"
REACH = (
    "import socket, sys\nsocket.create_connection((sys.argv[1], 22), timeout=10).close()\nprint('tcp/22 reachable')\n"
)


@pytest.fixture(scope="module")
def two_nodes(e2e_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    prof = load_profile(PROFILE)
    state_dir = tmp_path_factory.mktemp("clusters")
    state = cluster.start(
        cluster="e2e",
        image=e2e_image,
        workers=1,
        kubernetes_version=prof.kubernetes.version,
        pod_cidr=prof.kubernetes.pod_cidr,
        service_cidr=prof.kubernetes.service_cidr,
        state_dir=state_dir,
        cpus=2,
        memory_mib=1536,
        outbound=False,
        image_repository=prof.kubernetes.image_repository,
    )
    try:
        cp, worker = state.nodes
        for node in state.nodes:
            ssh.wait_for_ssh(node.vm, user=ADMIN_USER, key=state.ssh_key, timeout=1500)
        clusterwait.wait_bootstrap(state, cp, timeout=1200)
        clusterwait.wait_bootstrap(state, worker, timeout=1200)
        clusterwait.copy_kubeconfig(state, cp)
        yield state, state_dir
    finally:
        cluster.stop_all(state)


def _reach(state: cluster.ClusterState, src: cluster.NodeState, dst: cluster.NodeState) -> str:
    """ICMP ping when the image has ping, else a TCP connection to sshd: across the private network."""
    has_ping = ssh.ssh_run(src.vm, ADMIN_USER, state.ssh_key, ["sh", "-c", "command -v ping"], check=False)
    if has_ping.returncode == 0:
        cmd = ["ping", "-c", "3", "-W", "5", "-I", "cluster0", dst.ip]
    else:
        cmd = ["python3", "-c", REACH, dst.ip]
    return ssh.ssh_run(src.vm, ADMIN_USER, state.ssh_key, cmd).stdout.decode()


@pytest.mark.e2e
def test_nodes_reach_each_other_on_the_private_network(two_nodes: TwoNodes) -> None:
    state, _ = two_nodes
    cp, worker = state.nodes
    addr = ssh.ssh_run(worker.vm, ADMIN_USER, state.ssh_key, ["ip", "-4", "-o", "addr", "show", "cluster0"])
    assert f"{worker.ip}/24" in addr.stdout.decode()
    assert _reach(state, worker, cp)
    assert _reach(state, cp, worker)


@pytest.mark.e2e
def test_first_boot_layer_passes_on_both_nodes(two_nodes: TwoNodes, e2e_build: E2EBuild, tmp_path: Path) -> None:
    state, state_dir = two_nodes
    report = tmp_path / "firstboot.xml"
    cmd, env = acceptance.acceptance_command(
        hosts=[],
        cluster="e2e",
        state_dir=state_dir,
        standins=True,
        python=sys.executable,
        paths=[REPO / "tests" / "acceptance" / "test_firstboot.py"],
        extra=[f"--junitxml={report}", "-p", "no:cacheprovider", f"--nodeimage-profile={PROFILE}",
               f"--nodeimage-lock={e2e_build.standins.lock}"],  # fmt: skip
    )
    env.pop("NODEIMAGE_KUBECONFIG", None)  # stand-ins: no API server to ask
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
    assert int(suite.get("failures", 0)) == 0 and int(suite.get("errors", 0)) == 0
    # Both nodes ran it: at least the common checks passed twice.
    assert tests - skipped >= 12, proc.stdout[-4000:]
