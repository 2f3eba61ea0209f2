"""End to end, the current stack: build k8s-1.36-debian12 from the stand-ins and first-boot a control plane and a
worker from it.

It shares what the classic stack's e2e makes (tests/e2e/conftest.py): the stand-in artifacts and images, the
loopback registry serving them and the Debian 12 base (build/e2e/base), so nothing is made twice; it builds the
qcow2 only (the other formats are the classic e2e's) and boots the two nodes once. The build runs the un-booted
image suite (tests/acceptance) with the current stack's expectations, the nodes have no route out (every image
is baked), and the first-boot layer runs on both. The programs are stand-ins that check what Kubernetes 1.36,
CRI-O 1.36.3 and Kata 3.32 check (tests/standins/README.md): this proves the image, its drop-ins, its seeds and
first boot for this stack, not Kubernetes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeimage import cluster, ssh
from nodeimage.seedrender import ADMIN_USER
from tests.e2e import twonodes
from tests.e2e.conftest import CURRENT_PROFILE as PROFILE
from tests.e2e.conftest import CurrentBuild
from tests.e2e.twonodes import TwoNodes

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def two_nodes(current_build: CurrentBuild, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    # kubeadm 1.36's preflight wants 1700 MB on a control plane (checks_linux.go MemCheck)
    with twonodes.two_nodes(
        "e2e36", current_build.image, PROFILE, tmp_path_factory.mktemp("clusters36"), memory_mib=2048
    ) as nodes:
        yield nodes


def test_build_ran_the_image_suite_for_the_current_stack(current_build: CurrentBuild) -> None:
    manifest = json.loads((current_build.out_root / PROFILE / "build-manifest.json").read_text())
    assert manifest["image_suite"] == "passed"
    assert manifest["profile"] == PROFILE
    names = {i["name"] for i in manifest["inputs"]}
    assert {"kubelet", "cri-o-bundle", "kata-containers-static", "flannel-manifest"} <= names


def _ssh(state: cluster.ClusterState, node: cluster.NodeState, *cmd: str) -> str:
    return ssh.ssh_run(node.vm, ADMIN_USER, state.ssh_key, ["sudo", *cmd]).stdout.decode()


def test_nodes_boot_the_unified_cgroup_hierarchy(two_nodes: TwoNodes) -> None:
    """kubelet 1.36 refuses cgroup v1 (failCgroupV1): the image boots v2 with no kernel argument."""
    state, _ = two_nodes
    for node in state.nodes:
        assert "cgroup2" in _ssh(state, node, "stat", "-f", "-c", "%T", "/sys/fs/cgroup")
        assert "systemd.unified_cgroup_hierarchy=0" not in _ssh(state, node, "cat", "/proc/cmdline")


def test_crio_serves_the_kata_shim_handler(two_nodes: TwoNodes) -> None:
    """The stand-in CRI-O drops a handler that fails validation (as 1.36.3 does): the kata-qemu handler survived."""
    state, _ = two_nodes
    for node in state.nodes:
        info = json.loads(_ssh(state, node, "crictl", "info"))
        assert info["config"]["runtimes"] == ["crun", "kata-qemu", "runc"]
        assert info["config"]["cgroup_manager"] == "systemd"


def test_first_boot_layer_passes_on_both_nodes(two_nodes: TwoNodes, current_build: CurrentBuild, tmp_path: Path):
    twonodes.run_firstboot_suite(
        two_nodes, profile=PROFILE, lock=current_build.standins.lock, report=tmp_path / "firstboot36.xml"
    )
