"""Profiles load, and every bad value is one error naming file, key and value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nodeimage.lock import load_lock
from nodeimage.log import NodeimageError
from nodeimage.profiles import available_profiles, load_profile, parse_formats

REPO = Path(__file__).resolve().parents[2]


def test_default_profile_pins_the_classic_stack() -> None:
    p = load_profile()
    assert p.name == "k8s-1.17"
    assert (p.base.distro, p.base.release, p.base.source) == ("ubuntu", "focal", "cloud-image")
    assert p.stack == "k8s-1.17" and p.cni.name == "weave"
    assert p.kubernetes.image_repository == "registry.k8s.io"
    assert p.kubernetes.version == "v1.17.17"
    assert p.kubernetes.pod_cidr == "10.244.0.0/16"
    assert p.components["kata-static"] == "1.12.1"
    assert p.components["cri-o"].startswith("v1.17.")


@pytest.mark.parametrize("name", available_profiles())
def test_every_profile_matches_the_lock(name: str) -> None:
    """Every component a profile names is in the lock at the version the profile expects."""
    p = load_profile(name)
    lock = load_lock(REPO / "artifacts.lock.yaml")
    wanted: dict[str, str | None] = dict(p.components)
    if p.base.artifact:
        wanted[p.base.artifact] = None
    entries = lock.select(wanted, p.arch)
    assert {e.name for e in entries} == set(wanted)


def _write(tmp_path: Path, mutate) -> Path:  # type: ignore[no-untyped-def]
    data = yaml.safe_load((REPO / "profiles" / "k8s-1.17.yaml").read_text())
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(colour="blue"), "unknown key 'colour'"),
        (lambda d: d["kubernetes"].update(version="1.17"), "'kubernetes.version': '1.17'"),
        (lambda d: d["kubernetes"].update(pod_cidr="10.244.0.0/33"), "'kubernetes.pod_cidr': '10.244.0.0/33'"),
        (lambda d: d["kubernetes"].update(pod_cidr="10.244.0.1/16"), "'kubernetes.pod_cidr': '10.244.0.1/16'"),
        (lambda d: d["kubernetes"].update(service_cidr="10.244.0.0/20"), "overlaps"),
        (lambda d: d["components"].update({"cri-o": "latest"}), "'components.cri-o': 'latest'"),
        (lambda d: d["vm"].update(cpus=0), "'vm.cpus': 0"),
        (lambda d: d["base"].update(source="iso"), "'base.source': 'iso'"),
        (lambda d: d.update(arch="s390x"), "'arch': 's390x'"),
        (lambda d: d.update(formats=["vhd"]), "'formats': ['vhd']"),
        (lambda d: d.pop("kubernetes"), "missing required key 'kubernetes'"),
    ],
)
def test_bad_values_name_file_key_and_value(tmp_path: Path, mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, mutate)
    with pytest.raises(NodeimageError) as err:
        load_profile(str(path))
    assert str(path) in err.value.message
    assert expected in err.value.message


def test_component_the_stack_does_not_use_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: d["components"].update({"containerd": "v1.6.0"}))
    with pytest.raises(NodeimageError, match="not used by stack k8s-1.17 and CNI weave: containerd"):
        load_profile(str(path))


def test_component_the_stack_needs_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: d["components"].pop("crictl"))
    with pytest.raises(NodeimageError, match="components do not match the stack: missing crictl"):
        load_profile(str(path))


def test_artifact_missing_from_lock_is_named(tmp_path: Path) -> None:
    p = load_profile("k8s-1.17")
    lock = load_lock(REPO / "artifacts.lock.yaml")
    with pytest.raises(NodeimageError, match="no artifact named 'containerd'"):
        lock.select({**p.components, "containerd": "v1.6.0"}, p.arch)


def test_version_disagreeing_with_lock_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: d["components"].update({"crictl": "v1.18.0"}))
    p = load_profile(str(path))
    lock = load_lock(REPO / "artifacts.lock.yaml")
    with pytest.raises(NodeimageError, match=r"crictl is locked at version 'v1.17.0' but 'v1.18.0'"):
        lock.select(dict(p.components), p.arch)


def test_unknown_profile_lists_the_available_ones() -> None:
    with pytest.raises(NodeimageError) as err:
        load_profile("k8s-9.99")
    assert "k8s-9.99" in err.value.message
    assert "k8s-1.17" in (err.value.hint or "")


@pytest.mark.parametrize(
    ("value", "expected"), [("qcow2", ("qcow2",)), ("ova", ("qcow2", "ova")), ("qcow2,ova", ("qcow2", "ova"))]
)
def test_formats(value: str, expected: tuple[str, ...]) -> None:
    assert parse_formats(value) == expected


def test_bad_format_is_named() -> None:
    with pytest.raises(NodeimageError, match="'qcow2,vhdx'"):
        parse_formats("qcow2,vhdx")
