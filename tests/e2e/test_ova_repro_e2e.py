"""The e2e build's OVA, provenance and reproducibility (issue 4), on the real e2e image.

- the OVA's descriptor validates against the DMTF OVF schema, its .mf
  matches, its disk holds the same content as the qcow2, and virt-v2v (a
  real OVA consumer) imports it;
- `invoke verify` accepts the build and rejects a damaged output;
- (reproducibility across two packer runs is shown by test_incremental_e2e.py:
  a full build and an incremental one reusing this build's OS layer give the
  same bytes.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.e2e.conftest import E2EBuild, invoke
from tests.integration.test_ova import virt_v2v_full_import

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "tests" / "data" / "ovf-schema" / "dsp8023_1.1.1.xsd"


@pytest.fixture(scope="module")
def ova_members(e2e_build: E2EBuild, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("ova")
    with tarfile.open(e2e_build.build_dir / "node.ova") as tar:
        names = tar.getnames()
        tar.extractall(out, filter="data")
    assert names[0].endswith(".ovf"), names
    return {Path(n).suffix: out / n for n in names}


def test_ova_descriptor_validates_against_the_dmtf_schema(ova_members: dict[str, Path]) -> None:
    proc = subprocess.run(
        ["xmllint", "--nonet", "--noout", "--schema", str(SCHEMA), str(ova_members[".ovf"])],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_ova_disk_holds_the_qcow2s_content(e2e_build: E2EBuild, ova_members: dict[str, Path]) -> None:
    vmdk = ova_members[".vmdk"]
    subprocess.run(["qemu-img", "check", str(vmdk)], check=True, capture_output=True)
    proc = subprocess.run(["qemu-img", "compare", str(vmdk), str(e2e_build.image)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ova_imports_with_virt_v2v(e2e_build: E2EBuild, tmp_path: Path) -> None:
    virt_v2v_full_import(e2e_build.build_dir / "node.ova", tmp_path)


def test_sbom_lists_packages_and_lock_artifacts(e2e_build: E2EBuild) -> None:
    sbom = json.loads((e2e_build.build_dir / "node.spdx.json").read_text())
    names = {p["name"] for p in sbom["packages"]}
    assert {"kubernetes-node", "cri-o", "kata-static", "weave-manifest"} <= names
    assert {"runc", "conntrack", "cloud-init"} <= names  # distro packages installed in the image


def test_verify_accepts_the_build_and_rejects_a_damaged_output(
    e2e_build: E2EBuild, e2e_env: dict[str, str], tmp_path: Path
) -> None:
    ok = invoke(["verify", f"--build-dir={e2e_build.build_dir}"], env=e2e_env, log=e2e_build.log, stream=False)
    assert ok.returncode == 0, ok.stdout
    copy = tmp_path / "copy"
    shutil.copytree(e2e_build.build_dir, copy)
    with (copy / "node.spdx.json").open("ab") as fh:
        fh.write(b" ")
    bad = invoke(["verify", f"--build-dir={copy}"], env=e2e_env, log=e2e_build.log, stream=False)
    assert bad.returncode != 0
    assert "node.spdx.json" in bad.stdout
