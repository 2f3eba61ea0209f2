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

from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeimage import cluster, ssh
from nodeimage.seedrender import ADMIN_USER
from tests.e2e import twonodes
from tests.e2e.conftest import E2EBuild
from tests.e2e.twonodes import TwoNodes

PROFILE = "k8s-1.17-debian12"
REACH = (
    "import socket, sys\nsocket.create_connection((sys.argv[1], 22), timeout=10).close()\nprint('tcp/22 reachable')\n"
)


@pytest.fixture(scope="module")
def two_nodes(e2e_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    with twonodes.two_nodes("e2e", e2e_image, PROFILE, tmp_path_factory.mktemp("clusters"), memory_mib=1536) as nodes:
        yield nodes


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
    twonodes.run_firstboot_suite(two_nodes, profile=PROFILE, lock=e2e_build.standins.lock, report=tmp_path / "fb.xml")
