"""Every rendered user-data passes the real `cloud-init schema`, and the seed ISO holds what cloud-init reads."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from nodeimage import seed, seedrender

K8S = {"kubernetes_version": "v1.17.17", "pod_cidr": "10.244.0.0/16", "service_cidr": "10.96.0.0/12"}
# The current stack's seeds too (kubeadm v1beta4 documents, list-form kubeletExtraArgs in the written files).
K8S_1_36 = {**K8S, "kubernetes_version": "v1.36.4"}
NODES = [
    seed.NodeSpec(role="control-plane", name="cp", ip="192.168.100.10", ssh_public_key="ssh-ed25519 AAAAC3Nz test"),
    seed.NodeSpec(role="worker", name="worker-1", ip="192.168.100.11"),
    seed.NodeSpec(
        role="worker",
        name="worker-2",
        ip="192.168.100.12",
        nat_nic="52:54:00:00:00:01",
        private_nic="52:54:00:00:00:02",
    ),
]
# write_files `defer` (cloud-init 21.4) and other keys newer than Ubuntu 20.04's cloud-init 20.1
TOO_NEW_FOR_20_1 = {"defer"}

needs_cloud_init = pytest.mark.skipif(shutil.which("cloud-init") is None, reason="cloud-init is not installed")
needs_xorriso = pytest.mark.skipif(shutil.which("xorriso") is None, reason="xorriso is not installed")


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    state = tmp_path_factory.mktemp("state")
    return {n.name: seed.seed_node(cluster="schema", node=n, state_dir=state, **K8S) for n in NODES}


@pytest.fixture(scope="module")
def seeds_1_36(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    state = tmp_path_factory.mktemp("state36")
    return {n.name: seed.seed_node(cluster="schema36", node=n, state_dir=state, **K8S_1_36) for n in NODES}


@needs_cloud_init
@pytest.mark.parametrize("name", [n.name for n in NODES])
def test_current_stack_user_data_passes_cloud_init_schema(seeds_1_36: dict[str, Path], name: str) -> None:
    user_data = seeds_1_36[name].parent / "user-data"
    cfg = yaml.safe_load(user_data.read_text())
    kubeadm = next(f for f in cfg["write_files"] if f["path"] == seedrender.KUBEADM_CONFIG)["content"]
    assert "apiVersion: kubeadm.k8s.io/v1beta4" in kubeadm  # the current stack's documents, not v1beta2
    proc = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(user_data)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Valid cloud-config" in proc.stdout


@needs_cloud_init
@pytest.mark.parametrize("name", [n.name for n in NODES])
def test_user_data_passes_cloud_init_schema(seeds: dict[str, Path], name: str) -> None:
    user_data = seeds[name].parent / "user-data"
    proc = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(user_data)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Valid cloud-config" in proc.stdout


@needs_cloud_init
def test_schema_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "user-data"
    bad.write_text("#cloud-config\nwrite_files:\n  - path: /x\n    permissions: 644\n    bogus: 1\n")
    proc = subprocess.run(["cloud-init", "schema", "--config-file", str(bad)], capture_output=True, check=False)
    assert proc.returncode != 0


@pytest.mark.parametrize("name", [n.name for n in NODES])
def test_no_feature_newer_than_cloud_init_20_1(seeds: dict[str, Path], name: str) -> None:
    cfg = yaml.safe_load((seeds[name].parent / "user-data").read_text())
    for item in cfg["write_files"]:
        assert not TOO_NEW_FOR_20_1 & set(item), item["path"]


@needs_xorriso
def test_seed_iso_is_cidata_with_the_three_documents(seeds: dict[str, Path], tmp_path: Path) -> None:
    iso = seeds["cp"]
    listing = subprocess.run(
        ["xorriso", "-indev", str(iso), "-pvd_info", "-ls", "/"], capture_output=True, text=True, check=True
    )
    text = listing.stdout + listing.stderr
    assert "Volume Id    : cidata" in text
    for name in ("user-data", "meta-data", "network-config"):
        assert f"'{name}'" in text
    out = tmp_path / "user-data"
    subprocess.run(
        ["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/user-data", str(out)],
        capture_output=True,
        check=True,
    )
    assert out.read_bytes() == (iso.parent / "user-data").read_bytes()
