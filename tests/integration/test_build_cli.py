"""`invoke build` from the command line: clear, fast failures on bad input and unreachable upstream."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def invoke(args: list[str], tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NODEIMAGE_CACHE": str(tmp_path / "cache")}
    env.pop("NODEIMAGE_MIRROR", None)
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _lock_copy(tmp_path: Path, *, artifacts: bool, images: bool) -> Path:
    """The project's lock with made-up digests filled in where it has none (as `invoke lock` would record)."""
    lock = yaml.safe_load((REPO / "artifacts.lock.yaml").read_text())
    if artifacts:
        for art in lock["artifacts"].values():
            for version in art if isinstance(art, list) else [art]:
                for entry in version["arches"].values():
                    entry["checksum"] = entry["checksum"] or "sha256:" + "0" * 64
    if images:
        for image in lock["images"].values():
            for entry in image["platforms"].values():
                entry["digest"] = entry["digest"] or "sha256:" + "0" * 64
    path = tmp_path / "pinned.lock.yaml"
    path.write_text(yaml.safe_dump(lock))
    return path


def test_unreachable_upstream_fails_fast_naming_the_url_and_the_mirror_option(tmp_path: Path) -> None:
    """No internet here: a build whose lock pins everything must stop at the first download, not hang."""
    pinned = _lock_copy(tmp_path, artifacts=True, images=True)
    proc = invoke(["build", f"--lock-file={pinned}", f"--out={tmp_path / 'out'}"], tmp_path, timeout=90)
    assert proc.returncode == 1
    assert "https://dl.k8s.io/v1.17.17/kubernetes-node-linux-amd64.tar.gz" in proc.stderr
    assert "--mirror" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "k8s-1.17").exists()


def test_make_builds_lock_step_names_the_unreachable_url_and_changes_nothing(tmp_path: Path) -> None:
    """`make build` first runs `invoke lock --profile`: here that stops at the first download, in seconds."""
    lock = tmp_path / "lock.yaml"
    lock.write_bytes((REPO / "artifacts.lock.yaml").read_bytes())
    proc = invoke(["lock", "--profile=k8s-1.17", f"--lock-file={lock}"], tmp_path, timeout=90)
    assert proc.returncode == 1
    assert "https://dl.k8s.io/v1.17.17/kubernetes-node-linux-amd64.tar.gz is unreachable" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert lock.read_bytes() == (REPO / "artifacts.lock.yaml").read_bytes()


def test_image_lock_names_the_unreachable_registry_and_the_mirror_option(tmp_path: Path) -> None:
    lock = tmp_path / "lock.yaml"
    lock.write_bytes((REPO / "artifacts.lock.yaml").read_bytes())
    proc = invoke(["lock", "--images-only", "--profile=k8s-1.17", f"--lock-file={lock}"], tmp_path, timeout=90)
    assert proc.returncode == 1
    assert "registry.k8s.io/kube-apiserver:v1.17.17" in proc.stderr
    assert "https://registry.k8s.io/v2/" in proc.stderr
    assert "--registry-mirror" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert lock.read_bytes() == (REPO / "artifacts.lock.yaml").read_bytes()


def test_a_build_refuses_artifacts_the_lock_does_not_pin_before_any_download(tmp_path: Path) -> None:
    proc = invoke(["build", f"--out={tmp_path / 'out'}"], tmp_path, timeout=90)
    assert proc.returncode == 1
    assert "has no digest for cri-o v1.17.2 (amd64)" in proc.stderr
    assert "invoke lock --profile k8s-1.17" in proc.stderr
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "cache").exists()


def test_a_build_refuses_images_the_lock_does_not_pin_before_any_download(tmp_path: Path) -> None:
    pinned = _lock_copy(tmp_path, artifacts=True, images=False)
    proc = invoke(["build", f"--lock-file={pinned}", f"--out={tmp_path / 'out'}"], tmp_path, timeout=90)
    assert proc.returncode == 1
    assert "no digest for the container images registry.k8s.io/kube-apiserver:v1.17.17" in proc.stderr
    assert "a build never follows a tag" in proc.stderr
    assert "invoke lock --profile k8s-1.17" in proc.stderr
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "cache").exists()


def test_bad_profile_value_is_one_clear_error_and_nothing_is_written(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "profiles" / "k8s-1.17.yaml").read_text())
    data["kubernetes"]["pod_cidr"] = "10.244.0.0/99"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    proc = invoke(["build", f"--profile={bad}", f"--out={tmp_path / 'out'}"], tmp_path)
    assert proc.returncode == 1
    assert f"{bad}: invalid value for 'kubernetes.pod_cidr': '10.244.0.0/99'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "cache").exists()


def test_unknown_profile_lists_the_known_ones(tmp_path: Path) -> None:
    proc = invoke(["build", "--profile=k8s-2.0"], tmp_path)
    assert proc.returncode == 1
    assert "unknown profile: 'k8s-2.0'" in proc.stderr
    assert "k8s-1.17" in proc.stderr


def test_every_task_has_help_for_every_option() -> None:
    listing = subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=REPO, capture_output=True, text=True)
    tasks = [m[1] for m in re.finditer(r"^  (\S+)", listing.stdout, re.MULTILINE)]
    assert {"doctor", "build", "base", "lock", "fetch", "clean", "test"} <= set(tasks)
    for name in tasks:
        text = subprocess.run(
            [sys.executable, "-m", "invoke", "--help", name], cwd=REPO, capture_output=True, text=True
        )
        assert text.returncode == 0, text.stderr
        docstring, options = text.stdout.split("Options:", 1) if "Options:" in text.stdout else (text.stdout, "")
        assert docstring.strip(), f"{name} has no docstring"
        for line in options.splitlines():
            if line.startswith("  -"):  # an option line (continuations are indented further)
                flag, _, helptext = line.strip().partition("   ")
                assert helptext.strip(), f"invoke {name}: option {flag} has no help text"
