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


def test_unreachable_upstream_fails_fast_naming_the_url_and_the_mirror_option(tmp_path: Path) -> None:
    """No internet here: the default build must stop at the first download, not hang (timeout = failure)."""
    proc = invoke(["build", f"--out={tmp_path / 'out'}"], tmp_path, timeout=90)
    assert proc.returncode == 1
    assert "https://dl.k8s.io/v1.17.17/kubernetes-node-linux-amd64.tar.gz" in proc.stderr
    assert "--mirror" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "k8s-1.17").exists()


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
