"""The build pipeline end to end: `invoke build` for real, then what users rely on afterwards.

The image itself is checked by the image suite (tests/acceptance), which
`invoke build` runs on the result; here we check that it ran and passed,
the outputs and manifest, the no-op rebuild, the second fetch, a tampered
artifact and an interrupted build.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nodeimage.fsutil import file_sha256
from tests.e2e.conftest import PROFILE, REPO, E2EBuild, invoke

pytestmark = pytest.mark.e2e


def manifest(b: E2EBuild) -> dict:  # type: ignore[type-arg]
    return json.loads((b.build_dir / "build-manifest.json").read_text())


def test_build_ran_the_image_suite_and_it_passed(e2e_build: E2EBuild) -> None:
    m = manifest(e2e_build)
    assert m["image_suite"] == "passed"
    log = e2e_build.log.read_text()
    assert "running the image suite (tests/acceptance)" in log
    assert " passed" in log


def test_manifest_records_inputs_and_outputs(e2e_build: E2EBuild) -> None:
    m = manifest(e2e_build)
    lock = yaml.safe_load(e2e_build.standins.lock.read_text())["artifacts"]
    assert m["profile"] == PROFILE
    by_name = {i["name"]: i for i in m["inputs"]}
    for name, entry in by_name.items():
        assert entry["checksum"] == lock[name]["arches"].get("amd64", lock[name]["arches"].get("all"))["checksum"]
    assert set(m["phases"]) >= {"fetch", "base", "packer", "total"}
    assert m["packer_version"]
    outputs = {o["format"]: o for o in m["outputs"]}
    qcow2 = e2e_build.build_dir / outputs["qcow2"]["path"]
    assert outputs["qcow2"]["sha256"] == file_sha256(qcow2)
    assert outputs["qcow2"]["size"] == qcow2.stat().st_size


def test_image_passes_qemu_img_check(e2e_image: Path) -> None:
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(e2e_image)], capture_output=True, check=True, text=True
        ).stdout
    )
    assert info["format"] == "qcow2"
    assert "backing-filename" not in info  # self-contained: no backing file from the build
    subprocess.run(["qemu-img", "check", str(e2e_image)], check=True, capture_output=True)


def test_no_work_directory_left_behind(e2e_build: E2EBuild) -> None:
    assert not list(e2e_build.out_root.glob(".work-*"))


def test_second_build_with_nothing_changed_is_a_no_op(e2e_build: E2EBuild, e2e_env: dict[str, str]) -> None:
    before = (e2e_build.build_dir / "build-manifest.json").read_bytes()
    image_mtime = e2e_build.image.stat().st_mtime_ns
    proc = invoke(["build", *e2e_build.invoke_args()], env=e2e_env, log=e2e_build.log, stream=False, timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert "up to date" in proc.stdout
    assert (e2e_build.build_dir / "build-manifest.json").read_bytes() == before
    assert e2e_build.image.stat().st_mtime_ns == image_mtime


def test_second_fetch_downloads_nothing(e2e_build: E2EBuild, e2e_env: dict[str, str]) -> None:
    proc = invoke(
        [
            "fetch",
            "--profile",
            PROFILE,
            f"--lock-file={e2e_build.standins.lock}",
            f"--mirror={e2e_build.standins.mirror}",
        ],
        env=e2e_env,
        log=e2e_build.log,
        stream=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout
    assert "0 downloaded (0 B, 0 bytes)" in proc.stdout


def test_tampered_artifact_stops_the_build_before_anything_is_installed(
    e2e_build: E2EBuild, e2e_env: dict[str, str], tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(e2e_build.standins.mirror, mirror)
    crictl = next(mirror.rglob("crictl-v1.17.0-linux-amd64.tar.gz"))
    data = bytearray(crictl.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes: only the checksum can tell
    crictl.write_bytes(bytes(data))
    env = {**e2e_env, "NODEIMAGE_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "out"
    proc = invoke(
        ["build", "--profile", PROFILE, f"--lock-file={e2e_build.standins.lock}", f"--mirror={mirror}", f"--out={out}"],
        env=env,
        log=tmp_path / "log",
        stream=False,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "checksum mismatch for crictl" in proc.stdout
    assert "expected sha256:" in proc.stdout and "got sha256:" in proc.stdout
    assert "base image (" not in proc.stdout  # stopped in the fetch phase: nothing booted, nothing installed
    assert not (out / PROFILE).exists()
    assert not list((tmp_path / "cache").rglob(crictl.name))


def test_interrupted_build_leaves_no_output(e2e_build: E2EBuild, e2e_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "base").symlink_to(e2e_build.out_root / "base")
    args = [
        "build",
        "--profile",
        PROFILE,
        f"--lock-file={e2e_build.standins.lock}",
        f"--mirror={e2e_build.standins.mirror}",
        f"--registry-mirror={e2e_build.standins.registry}",
        f"--out={out}",
        "--force",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", *args],
        cwd=REPO,
        env=e2e_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 600
    for line in proc.stdout:
        seen.append(line)
        if "Waiting for SSH" in line or time.monotonic() > deadline:
            break
    assert any("Waiting for SSH" in s for s in seen), "".join(seen)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=300)
    text = "".join(seen) + rest
    assert proc.returncode != 0, text
    assert "interrupted" in text
    assert not (out / PROFILE / "node.qcow2").exists()
    assert not list(out.glob(".work-*")), "work directory left behind"
    ps = subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True, text=True).stdout
    assert str(out) not in ps, f"qemu still running: {ps}"
