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
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeimage import acceptance, cluster, clusterwait, ssh
from nodeimage.profiles import load_profile
from nodeimage.seedrender import ADMIN_USER
from tests.e2e.conftest import CURRENT_PROFILE as PROFILE
from tests.e2e.conftest import CurrentBuild

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


TwoNodes = tuple[cluster.ClusterState, Path]


@pytest.fixture(scope="module")
def two_nodes(current_build: CurrentBuild, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    prof = load_profile(PROFILE)
    state_dir = tmp_path_factory.mktemp("clusters36")
    state = cluster.start(
        cluster="e2e36",
        image=current_build.image,
        workers=1,
        kubernetes_version=prof.kubernetes.version,
        pod_cidr=prof.kubernetes.pod_cidr,
        service_cidr=prof.kubernetes.service_cidr,
        state_dir=state_dir,
        cpus=2,
        memory_mib=2048,  # kubeadm 1.36's preflight wants 1700 MB on a control plane (checks_linux.go MemCheck)
        outbound=False,
        image_repository=prof.kubernetes.image_repository,
    )
    try:
        cp, worker = state.nodes
        for node in state.nodes:
            ssh.wait_for_ssh(node.vm, user=ADMIN_USER, key=state.ssh_key, timeout=1500)
        clusterwait.wait_bootstrap(state, cp, timeout=1200)
        clusterwait.wait_bootstrap(state, worker, timeout=1200)
        yield state, state_dir
    finally:
        cluster.stop_all(state)


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
    state, state_dir = two_nodes
    report = tmp_path / "firstboot36.xml"
    cmd, env = acceptance.acceptance_command(
        hosts=[],
        cluster="e2e36",
        state_dir=state_dir,
        standins=True,
        python=sys.executable,
        paths=[REPO / "tests" / "acceptance" / "test_firstboot.py"],
        extra=[f"--junitxml={report}", "-p", "no:cacheprovider", f"--nodeimage-profile={PROFILE}",
               f"--nodeimage-lock={current_build.standins.lock}"],  # fmt: skip
    )
    env.pop("NODEIMAGE_KUBECONFIG", None)  # stand-ins: no API server to ask
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
    assert int(suite.get("failures", 0)) == 0 and int(suite.get("errors", 0)) == 0
    assert tests - skipped >= 12, proc.stdout[-4000:]
