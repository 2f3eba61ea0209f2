"""Cluster API (issue 11): a node of the current stack booted with the user-data Cluster API's kubeadm bootstrap
provider (v1.14) writes completes that bootstrap, and nodeimage's own first boot stays out of the way.

The user-data is rendered from Cluster API's own templates (tests/capi, copied verbatim from
kubernetes-sigs/cluster-api@v1.14.0 bootstrap/kubeadm/pkg/cloudinit/) for a first control plane with CRI-O,
as the README's KubeadmControlPlane produces it. The node boots the e2e's k8s-1.36-debian12 image with no route
out. The kubeadm it runs is the stand-in, which holds the configuration to kubeadm 1.36's API and preflight
checks (tests/standins/README.md): this proves the image takes Cluster API's bootstrap as it is written, not
that a real kubeadm completes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeimage import nocloud, ssh, vm
from nodeimage.profiles import load_profile
from nodeimage.sshkey import generate_keypair
from tests.capi.crio import crio_user_data, make_ca
from tests.capi.render import User
from tests.e2e.conftest import CURRENT_PROFILE, CurrentBuild

pytestmark = pytest.mark.e2e

USER = "capi"
GUEST_IP = "10.0.2.15"  # qemu user networking gives the guest this address
SENTINEL = "/run/cluster-api/bootstrap-success.complete"


@pytest.fixture(scope="module")
def capi_node(current_build: CurrentBuild, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[vm.VM, Path]]:
    work = tmp_path_factory.mktemp("capi")
    key = work / "id_ed25519"
    public = generate_keypair(key, comment="capi-e2e")
    prof = load_profile(CURRENT_PROFILE)
    user_data = crio_user_data(
        "init",
        kubernetes_version=prof.kubernetes.version,
        endpoint=f"{GUEST_IP}:6443",
        cluster_name="capi-e2e",
        ca=make_ca(),
        pod_subnet=prof.kubernetes.pod_cidr,
        service_subnet=prof.kubernetes.service_cidr,
        users=[User(name=USER, sudo="ALL=(ALL) NOPASSWD:ALL", ssh_authorized_keys=(public,))],
    )
    seed = work / "seed.iso"
    nocloud.write_seed_iso(seed, user_data=user_data,
                           meta_data={"instance-id": "capi-e2e-cp", "local-hostname": "capi-cp"})  # fmt: skip
    spec = vm.VMSpec(name="capi", disk=current_build.image, seed_iso=seed, cpus=2, memory_mib=2048, outbound=False)
    with vm.booted(spec, work / "vm") as machine:
        ssh.wait_for_ssh(machine, user=USER, key=key, timeout=1500)
        yield machine, key


def _run(node: tuple[vm.VM, Path], command: str) -> str:
    machine, key = node
    return ssh.ssh_run(machine, USER, key, ["sudo", "sh", "-c", command]).stdout.decode()


def test_the_cluster_api_bootstrap_completes(capi_node: tuple[vm.VM, Path]) -> None:
    """cloud-init ran Cluster API's runcmd: `kubeadm init --config /run/kubeadm/kubeadm.yaml && echo success > ...`."""
    waited = _run(capi_node, f"cloud-init status --wait >/dev/null 2>&1; cat {SENTINEL} || true")
    assert waited.strip() == "success", _run(capi_node, "tail -n 60 /var/log/cloud-init-output.log")
    log = _run(capi_node, "cat /var/log/nodeimage-standins/kubeadm.log 2>/dev/null || true")
    calls = [json.loads(line)[1:] for line in log.splitlines()]
    assert ["init", "--config", "/run/kubeadm/kubeadm.yaml"] in calls, calls
    assert "status: done" in _run(capi_node, "cloud-init status || true")


def test_nodeimages_first_boot_stays_out_of_the_way(capi_node: tuple[vm.VM, Path]) -> None:
    """No nodeimage seed, so nodeimage-bootstrap never ran: no log, no sentinel, no marks, the unit skipped."""
    assert _run(capi_node, "ls /var/log/nodeimage-bootstrap.log /run/nodeimage /var/lib/nodeimage 2>&1 || true").count(
        "No such file"
    ) == 3
    state = _run(capi_node, "systemctl show -p ActiveState,ConditionResult nodeimage-bootstrap.service")
    assert "ConditionResult=no" in state and "ActiveState=inactive" in state, state
