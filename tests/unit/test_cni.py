"""The CNI units: Flannel (the current stack's default) and Weave's maintained fork, as the build bakes them and
as first boot patches them (nodeimage-bootstrap's pod-CIDR methods).

The manifests are the stand-ins' (tests/standins: the same documents, names and images as the releases).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from nodeimage import cni
from nodeimage.log import NodeimageError
from nodeimage.profiles import parse_profile

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "standins"))
import make_standins as ms  # noqa: E402

FLANNEL = cni.get("flannel")
WEAVE = cni.get("weave")
WEAVE_RAJCH = cni.get("weave-rajch")


def flannel_text(version: str = "v0.28.9") -> str:
    return ms.flannel_manifest(version, "kube-flannel.yml", "amd64").decode()


def rajch_text(version: str = "2.9.0") -> str:
    return ms.weave_manifest_rajch(version, "weave-daemonset-k8s-1.11.yaml", "amd64").decode()


def bootstrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """provision/files/nodeimage-bootstrap as a module, with its root at ``tmp_path``."""
    monkeypatch.setenv("NODEIMAGE_BOOTSTRAP_ROOT", str(tmp_path))
    path = REPO / "provision" / "files" / "nodeimage-bootstrap"
    loader = importlib.machinery.SourceFileLoader("nodeimage_bootstrap", str(path))
    spec = importlib.util.spec_from_loader("nodeimage_bootstrap", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


# --- Flannel ------------------------------------------------------------------------------------------------


def test_flannel_manifest_loads_as_one_list_in_release_order() -> None:
    manifest = FLANNEL.load(flannel_text(), "kube-flannel.yml")
    assert manifest["kind"] == "List"
    assert [i["kind"] for i in manifest["items"]] == [
        "Namespace", "ClusterRole", "ClusterRoleBinding", "ServiceAccount", "ConfigMap", "DaemonSet"]  # fmt: skip


@pytest.mark.parametrize(
    ("breakit", "message"),
    [
        (lambda t: t.replace("name: kube-flannel-ds", "name: flannel-ds"), "is not the Flannel release manifest"),
        (lambda t: t.replace('"Network"', '"network"'), "is not the Flannel release manifest"),
        (lambda t: t.replace("kind: Namespace", "kind: ServiceAccount", 1), "has no Namespace kube-flannel"),
        (lambda t: t + "\n: [\n", "is not YAML"),
    ],
)
def test_flannel_refuses_another_manifest(breakit, message: str) -> None:
    with pytest.raises(NodeimageError, match=message):
        FLANNEL.load(breakit(flannel_text()), "kube-flannel.yml")


def test_flannel_images_in_the_order_the_daemonset_runs_them() -> None:
    manifest = FLANNEL.load(flannel_text(), "kube-flannel.yml")
    expected = FLANNEL.expected_images("v0.28.9", None)
    assert expected == ["ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3", "ghcr.io/flannel-io/flannel:v0.28.9"]
    assert FLANNEL.images(FLANNEL.set_images(manifest, None, "v0.28.9")) == expected


def test_flannel_images_from_a_private_registry() -> None:
    manifest = FLANNEL.set_images(FLANNEL.load(flannel_text(), "m"), "registry.example/flannel", "v0.28.9")
    assert FLANNEL.images(manifest) == FLANNEL.expected_images("v0.28.9", "registry.example/flannel")
    assert all(i.startswith("registry.example/flannel/") for i in FLANNEL.images(manifest))


def test_flannel_refuses_a_manifest_whose_images_are_not_the_pinned_release() -> None:
    """The lock pins the images the release runs: a manifest running others would start unbaked images."""
    text = flannel_text().replace("flannel:v0.28.9", "flannel:v0.28.8")
    with pytest.raises(NodeimageError, match="runs .*flannel:v0.28.8"):
        FLANNEL.set_images(FLANNEL.load(text, "m"), None, "v0.28.9")
    with pytest.raises(NodeimageError, match="does not know which flannel-cni-plugin image"):
        FLANNEL.expected_images("v0.27.0", None)


def test_flannel_pod_cidr_goes_into_net_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """nodeimage-bootstrap's configmap-json method sets net-conf.json's Network (flanneld reads it)."""
    boot = bootstrap(tmp_path, monkeypatch)
    manifest = json.loads(json.dumps(FLANNEL.load(flannel_text(), "m")))  # as the image bakes it: JSON
    boot.set_pod_cidr(manifest, FLANNEL.patch.as_dict(), "10.200.0.0/16")
    cm = cni.find(manifest, "ConfigMap", "kube-flannel-cfg")
    assert cm is not None
    net = json.loads(cm["data"]["net-conf.json"])
    assert net == {"Network": "10.200.0.0/16", "EnableNFTables": False, "Backend": {"Type": "vxlan"}}
    assert "cni-conf.json" in cm["data"]  # untouched


def test_flannel_pod_cidr_patch_fails_without_the_configmap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    boot = bootstrap(tmp_path, monkeypatch)
    manifest = json.loads(json.dumps(FLANNEL.load(flannel_text(), "m")))
    manifest["items"] = [i for i in manifest["items"] if i["kind"] != "ConfigMap"]
    with pytest.raises(boot.StepFailed, match="has no ConfigMap kube-flannel-cfg"):
        boot.set_pod_cidr(manifest, FLANNEL.patch.as_dict(), "10.200.0.0/16")


# --- Weave: Weaveworks' 2.8.1 and the maintained fork ----------------------------------------------------------


def test_weave_fork_images_are_pinned_and_need_no_registry() -> None:
    """The fork's manifest names :latest with imagePullPolicy Always (rajch/weave v2.9.0): baked, the images
    must be the pinned version and nothing may force a pull."""
    manifest = WEAVE_RAJCH.load(rajch_text(), "weave-daemonset-k8s-1.11.yaml")
    raw = [c["image"] for c in cni.containers(manifest)]
    assert raw == ["rajchaudhuri/weave-kube:latest"] * 2 + ["rajchaudhuri/weave-npc:latest"]
    out = WEAVE_RAJCH.set_images(manifest, None, "2.9.0")
    assert WEAVE_RAJCH.images(out) == WEAVE_RAJCH.expected_images("2.9.0", None) == [
        "docker.io/rajchaudhuri/weave-kube:2.9.0", "docker.io/rajchaudhuri/weave-npc:2.9.0"]  # fmt: skip
    assert not [c for c in cni.containers(out) if c.get("imagePullPolicy") == "Always"]


def test_weave_fork_keeps_the_ipalloc_range_patch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    boot = bootstrap(tmp_path, monkeypatch)
    manifest = json.loads(json.dumps(WEAVE_RAJCH.load(rajch_text(), "m")))
    boot.set_pod_cidr(manifest, WEAVE_RAJCH.patch.as_dict(), "10.244.0.0/16")
    weave = next(c for c in cni.containers(manifest) if c["name"] == "weave")
    env = {e["name"]: e.get("value") for e in weave["env"]}
    assert env["IPALLOC_RANGE"] == "10.244.0.0/16" and env["CHECKPOINT_DISABLE"] == "1"


def test_weaveworks_images_unchanged() -> None:
    text = ms.weave_manifest("2.8.1", "weave-daemonset-k8s-1.11.yaml", "amd64").decode()
    out = WEAVE.set_images(WEAVE.load(text, "m"), None, "2.8.1")
    assert WEAVE.images(out) == ["docker.io/weaveworks/weave-kube:2.8.1", "docker.io/weaveworks/weave-npc:2.8.1"]


def test_weave_refuses_the_flannel_manifest() -> None:
    with pytest.raises(NodeimageError, match="the Weave manifest is not YAML: expected a single document"):
        WEAVE_RAJCH.load(flannel_text(), "kube-flannel.yml")  # several documents, not one List
    with pytest.raises(NodeimageError, match="is not the Weave Net release manifest"):
        WEAVE_RAJCH.load(yaml.safe_dump(FLANNEL.load(flannel_text(), "m")), "kube-flannel.yml")


def _profile(tmp_path: Path, **cni_settings: object) -> dict:
    data = yaml.safe_load((REPO / "profiles" / "k8s-1.36.yaml").read_text())
    data["cni"] = cni_settings
    return data


def test_a_current_profile_can_select_the_weave_fork(tmp_path: Path) -> None:
    data = _profile(tmp_path, name="weave-rajch", image_repository="docker.io/rajchaudhuri")
    data["components"].pop("flannel-manifest")
    data["components"]["weave-manifest-rajch"] = "2.9.0"
    p = parse_profile(data, tmp_path / "weave.yaml")
    assert p.cni.name == "weave-rajch"
    assert WEAVE_RAJCH.expected_images(p.components["weave-manifest-rajch"], p.cni.image_repository) == [
        "docker.io/rajchaudhuri/weave-kube:2.9.0", "docker.io/rajchaudhuri/weave-npc:2.9.0"]  # fmt: skip


def test_a_profile_must_pin_its_cnis_manifest(tmp_path: Path) -> None:
    data = _profile(tmp_path, name="weave-rajch")
    with pytest.raises(NodeimageError, match="missing weave-manifest-rajch"):
        parse_profile(data, tmp_path / "weave.yaml")


def test_cni_names() -> None:
    assert cni.names() == ["flannel", "weave", "weave-rajch"]
