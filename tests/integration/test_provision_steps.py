"""The provision steps on a stage the build really writes (nodeimage.stage), without a VM or a chroot.

stack/00-verify.sh only reads the stage and writes inside it, so it runs here directly: it must accept the
staged artifacts, name a mismatch or a missing file, and leave no mark then; the install steps refuse an
unverified stage. (Every step runs for real in the e2e build, and twice, for idempotence, in
tests/e2e/test_provision_chroot_e2e.py.)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from nodeimage.config import make_config
from nodeimage.fetch import fetch
from nodeimage.stage import write_stage
from tests.standins.make_standins import make_standins

REPO = Path(__file__).resolve().parents[2]
PROFILE = "k8s-1.17-debian12"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the steps require root")


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    lock, mirror = make_standins(REPO / "artifacts.lock.yaml", tmp_path / "standins")
    config = make_config(PROFILE, lock_file=lock, mirror=str(mirror), out_root=tmp_path / "out")
    files = fetch(config.entries, mirror=str(mirror), cache=tmp_path / "cache")
    return write_stage(config, files, tmp_path / "stage")


def step(stage: Path, path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NODEIMAGE_STAGE": str(stage), "NODEIMAGE_WORK": str(stage.parent / "work")}
    return subprocess.run(["bash", str(stage / path)], env=env, capture_output=True, text=True, timeout=120)


def test_verify_accepts_the_staged_artifacts_and_marks_the_stage(stage: Path) -> None:
    out = step(stage, "stack/steps/00-verify.sh")
    assert out.returncode == 0, out.stderr
    assert (stage.parent / "work" / "stack-verified").exists()
    assert "7 artifacts match the lock" in out.stderr


def test_verify_names_a_mismatch_and_leaves_no_mark(stage: Path) -> None:
    (stage.parent / "work").mkdir()
    (stage.parent / "work" / "stack-verified").write_text("stale\n")
    target = stage / "stack" / "artifacts" / "crictl-v1.17.0-linux-amd64.tar.gz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the digest can tell
    target.unlink()  # a hard link into the download cache: replace, never write through it
    target.write_bytes(bytes(data))
    out = step(stage, "stack/steps/00-verify.sh")
    assert out.returncode != 0
    assert "artifacts/crictl-v1.17.0-linux-amd64.tar.gz: FAILED" in out.stderr
    assert "nothing was installed" in out.stderr
    assert not (stage.parent / "work" / "stack-verified").exists()


def test_verify_names_a_missing_artifact(stage: Path) -> None:
    (stage / "stack" / "artifacts" / "conmon").unlink()
    out = step(stage, "stack/steps/00-verify.sh")
    assert out.returncode != 0 and "artifacts/conmon" in out.stderr


def test_install_refuses_an_unverified_stage(stage: Path) -> None:
    out = step(stage, "stack/steps/10-install.sh")
    assert out.returncode != 0 and "stack/00-verify.sh runs first" in out.stderr


def test_steps_need_build_env(stage: Path) -> None:
    (stage / "build.env").unlink()
    out = step(stage, "stack/steps/00-verify.sh")
    assert out.returncode != 0 and "no build.env" in out.stderr


def test_install_lines_are_plain_tokens(stage: Path) -> None:
    for line in (stage / "stack" / "install.tsv").read_text().splitlines():
        kind, archive, member, dest, mode = line.split("\t")
        assert kind in ("file", "tree", "link") and archive.startswith("artifacts/") and dest.startswith("/")
        assert (stage / "stack" / archive).is_file()
        int(mode, 8)
