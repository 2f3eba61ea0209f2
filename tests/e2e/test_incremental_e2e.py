"""Layered builds (issue 12): a change to the last layer rebuilds only that layer, and the result is the same
bytes as a full build of the same inputs.

The change is made in a copy of the checkout (a new step in the node layer that writes /etc/motd), so the
product is exercised as a user would change it. Two builds of the copy follow, sharing the e2e build's
download and layer caches:

- an incremental one: the OS layer (packer) and the stack layer come from the caches the e2e build filled;
- a full one (``--force``): packer and every layer run again.

Their qcow2, OVA and SBOM must be identical. This also shows the build is reproducible across two packer
runs (the incremental build's OS layer is the e2e build's, the full one's is new).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nodeimage.disk import read_file
from nodeimage.repro import compare_builds
from tests.e2e.conftest import PROFILE, REPO, E2EBuild, invoke

pytestmark = pytest.mark.e2e

STEP = """\
#!/usr/bin/env bash
# node/20 (added by the incremental-build test): a message of the day
set -o errexit -o nounset -o pipefail
printf 'built by the incremental-build test\\n' >/etc/motd
"""


def copy_checkout(dest: Path) -> Path:
    """The checkout's files (tracked and untracked, not ignored) under ``dest``, modes kept."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.split(b"\0")  # fmt: skip
    for name in filter(None, listed):
        src = REPO / os.fsdecode(name)
        if not src.exists():  # deleted in the working tree
            continue
        target = dest / os.fsdecode(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
    return dest


def test_a_last_layer_change_rebuilds_only_that_layer_and_matches_a_full_build(
    e2e_build: E2EBuild, e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    checkout = copy_checkout(tmp_path_factory.mktemp("checkout"))
    step = checkout / "provision" / "node" / "20-motd.sh"
    step.write_text(STEP)
    step.chmod(0o755)
    args = [a for a in e2e_build.invoke_args() if not a.startswith(("--out=", "--suite-args="))]
    outs = {}
    for kind, extra in (("incremental", []), ("full", ["--force"])):
        out = tmp_path_factory.mktemp(kind)
        (out / "base").symlink_to(e2e_build.out_root / "base")
        proc = invoke(["build", *args, f"--out={out}", "--skip-suite", *extra], env=e2e_env, log=e2e_build.log,
                      stream=True, cwd=checkout)  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-4000:]
        outs[kind] = out / PROFILE
    incremental = json.loads((outs["incremental"] / "build-manifest.json").read_text())
    full = json.loads((outs["full"] / "build-manifest.json").read_text())
    assert "packer" not in incremental["phases"], "the OS layer should have come from the cache"
    assert "packer" in full["phases"]
    assert incremental["layers"] == full["layers"]
    first = json.loads((e2e_build.build_dir / "build-manifest.json").read_text())
    assert incremental["layers"]["os"] == first["layers"]["os"]
    assert incremental["layers"]["stack"] == first["layers"]["stack"]
    assert incremental["layers"]["node"] != first["layers"]["node"]
    assert read_file(outs["incremental"] / "node.qcow2", "/etc/motd") == b"built by the incremental-build test\n"
    report = compare_builds(outs["full"], outs["incremental"])
    print(report.render())
    assert report.identical, report.render()
    phases = {k: v for k, v in incremental["phases"].items() if k != "total"}
    print(f"incremental {incremental['phases']['total']} s vs full {full['phases']['total']} s; phases {phases}")
