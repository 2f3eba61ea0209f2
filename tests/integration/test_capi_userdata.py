"""Cluster-API-style user-data (tests/capi) through the real cloud-init, the way a node's cloud-init takes it.

Cluster API's user-data starts with ``## template: jinja`` (kubernetes-sigs/cluster-api@v1.14.0
bootstrap/kubeadm/pkg/cloudinit/cloudinit.go:35-37), so cloud-init first renders it as a jinja template
against the instance data and then reads the result as cloud-config. ``cloud-init schema`` (22.4) refuses
the jinja header itself ("needs to begin with #cloud-config"), so each user-data goes through
``cloud-init devel render`` with an instance-data file first, then ``cloud-init schema --config-file``:
the same two steps, both done by cloud-init's own code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.capi import render
from tests.capi.crio import ROLES, crio_user_data, make_ca

pytestmark = pytest.mark.skipif(shutil.which("cloud-init") is None, reason="cloud-init is not installed")

CA = make_ca()
V = "v1.36.4"
ENDPOINT = "192.168.100.10:6443"
TOKEN = "abcdef.0123456789abcdef"

# what cloud-init exposes to jinja as ``ds`` and ``v1`` (instance-data.json); the node's name comes from it
INSTANCE_DATA = {
    "ds": {"meta_data": {"local_hostname": "capi-md-0-abcde"}},
    "v1": {"local_hostname": "capi-md-0-abcde"},
}


def cloud_init(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["cloud-init", *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


def jinja_render(user_data: str, tmp_path: Path) -> str:
    src, inst = tmp_path / "user-data", tmp_path / "instance-data.json"
    src.write_text(user_data)
    inst.write_text(json.dumps(INSTANCE_DATA))
    proc = cloud_init("devel", "render", src, "--instance-data", inst)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def schema(config: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rendered"
    path.write_text(config)
    return cloud_init("schema", "--config-file", path)


def user_data(role: str, **kw: object) -> str:
    return crio_user_data(role, kubernetes_version=V, endpoint=ENDPOINT, token=TOKEN, ca=CA,
                          pod_subnet="10.244.0.0/16", service_subnet="10.96.0.0/12", **kw)  # type: ignore[arg-type]  # fmt: skip


@pytest.mark.parametrize("role", ROLES)
def test_capi_user_data_passes_cloud_init_schema(role: str, tmp_path: Path) -> None:
    text = user_data(role)
    rendered = jinja_render(text, tmp_path)
    # no jinja in it: cloud-init's rendering only drops the header line
    assert rendered == render.strip_header(text)
    proc = schema(rendered, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Valid cloud-config" in proc.stdout


def test_the_jinja_header_is_what_puts_the_node_name_in_place(tmp_path: Path) -> None:
    # Cluster API's control-plane proposal names nodes from instance data this way
    # (docs/proposals/20191017-kubeadm-based-control-plane.md:335, "name: '{{ ds.meta_data.local_hostname }}'")
    rendered = jinja_render(user_data("worker", node_name="{{ ds.meta_data.local_hostname }}"), tmp_path)
    (item,) = [f for f in yaml.safe_load(rendered)["write_files"] if f["path"] == render.JOIN_CONFIG_PATH]
    (doc,) = [d for d in yaml.safe_load_all(item["content"]) if d]
    assert doc["nodeRegistration"]["name"] == "capi-md-0-abcde"
    assert schema(rendered, tmp_path).returncode == 0


def test_the_schema_step_can_fail(tmp_path: Path) -> None:
    rendered = jinja_render(user_data("worker"), tmp_path)
    broken = rendered.replace("    permissions: '0640'\n", "    permissions: '0640'\n    bogus: 1\n", 1)
    assert broken != rendered
    proc = schema(broken, tmp_path)
    assert proc.returncode != 0
    assert "bogus" in proc.stdout + proc.stderr


def test_cloud_init_refuses_the_unrendered_header(tmp_path: Path) -> None:
    # why the render step is there: 22.4's schema reads the jinja header as a missing #cloud-config
    proc = schema(user_data("worker"), tmp_path)
    assert proc.returncode != 0
    assert "#cloud-config" in proc.stdout + proc.stderr
