"""Run the provision steps in a Debian 12 chroot with the test stand-ins, then accept the tree.

Without packer or a VM: mmdebstrap builds a bookworm tree from Debian's mirror,
the stage directory is laid out exactly as packer uploads it
(/var/tmp/nodeimage/{build.json,artifacts/,files/,lib.sh}), and each step runs
as ``chroot DIR env NODEIMAGE_STAGE=/var/tmp/nodeimage bash <step>``. Checked:
a tampered artifact stops 00-verify naming it and nothing is installed; every
step succeeds and a second run leaves the same files; the acceptance suite
passes on the result (chroot mode, stand-ins).

The chroot run is slow (mmdebstrap, apt from the mirror) and marked e2e; set
NODEIMAGE_TEST_CACHE to a directory to keep the base tarball between runs. The
checks of 00-verify.sh and lib.sh at the end run on a scratch stage directly
(they read the stage and write only inside it) and are fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "standins"))
from make_standins import make_standins  # noqa: E402

PROFILE = "k8s-1.17-debian12"
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = "python3,systemd,systemd-sysv,cloud-init,openssh-server,python3-yaml"
STAGE = "var/tmp/nodeimage"
STEPS = sorted(p.name for p in (REPO / "provision").glob("[0-9][0-9]-*.sh"))
# Not part of the resulting image: pseudo filesystems, logs, apt's and dpkg's own bookkeeping.
VOLATILE = ("proc", "dev", "sys", "run", "var/log", "var/cache", "var/lib/apt/lists", STAGE)
# Content hashed (not just stat'ed) under these: where the steps write.
HASHED = ("etc", "opt", "usr/local", "var/lib", "root", "home", "tmp", "var/tmp")
TAMPERED = "kubernetes-node"


def _need(condition: bool, reason: str) -> None:
    if not condition:
        pytest.skip(reason)


def chroot(root: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
    return subprocess.run(["chroot", str(root), *args], env=env, capture_output=True, text=True, check=check)


def run_step(root: Path, step: str) -> subprocess.CompletedProcess[str]:
    return chroot(
        root, "env", f"NODEIMAGE_STAGE=/{STAGE}", "DEBIAN_FRONTEND=noninteractive", "bash", f"/{STAGE}/{step}"
    )


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path of the tree with type, mode and owner, plus content digests where the steps write."""
    state: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        dirnames[:] = [d for d in dirnames if os.path.join(rel_dir, d) not in VOLATILE]
        for name in dirnames + filenames:
            rel = os.path.join(rel_dir, name)
            if rel in VOLATILE or rel.endswith("-old"):
                continue
            st = os.lstat(root / rel)
            if stat.S_ISLNK(st.st_mode):
                extra: object = os.readlink(root / rel)
            elif stat.S_ISREG(st.st_mode) and rel.startswith(HASHED):
                extra = hashlib.sha256((root / rel).read_bytes()).hexdigest()
            elif stat.S_ISREG(st.st_mode):
                extra = st.st_size
            else:
                extra = None
            state[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra)
    return state


def diff(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    changes = [f"+ {p}" for p in sorted(after.keys() - before.keys())]
    changes += [f"- {p}" for p in sorted(before.keys() - after.keys())]
    common = sorted(before.keys() & after.keys())
    changes += [f"~ {p}: {before[p]} -> {after[p]}" for p in common if before[p] != after[p]]
    return changes


def base_tarball(tmp: Path) -> Path:
    cache = os.environ.get("NODEIMAGE_TEST_CACHE")
    target_dir = Path(cache) if cache else tmp
    target_dir.mkdir(parents=True, exist_ok=True)
    tarball = target_dir / f"bookworm-apt-{hashlib.sha256(BASE_PACKAGES.encode()).hexdigest()[:12]}.tar"
    if not tarball.exists():
        partial = tarball.with_suffix(".partial.tar")
        subprocess.run(
            ["mmdebstrap", "--quiet", "--variant=apt", f"--include={BASE_PACKAGES}", "bookworm", str(partial), MIRROR],
            check=True,
            timeout=1200,
        )
        partial.rename(tarball)
    return tarball


def build_json(standin_lock: Path, profile: dict) -> dict:
    """build.json as the build writes it (see the provision contract in provision/lib.sh)."""
    lock = yaml.safe_load(standin_lock.read_text())
    components = {}
    for name, version in profile["components"].items():
        entry = lock["artifacts"][name]
        arch_entry = entry["arches"].get(profile["arch"]) or entry["arches"]["all"]
        components[name] = {
            "version": str(version),
            "file": "artifacts/" + urlsplit(arch_entry["url"]).path.rsplit("/", 1)[-1],
            "checksum": arch_entry["checksum"],
        }
    return {
        "profile": profile["name"],
        "arch": profile["arch"],
        "base": {"distro": profile["base"]["distro"], "release": str(profile["base"]["release"])},
        "kubernetes": dict(profile["kubernetes"]),
        "components": components,
        "nodeimage_version": "0.1.0",
        "lock_sha256": hashlib.sha256(standin_lock.read_bytes()).hexdigest(),
    }


def stage(root: Path, standins: Path, build: dict, tamper: str | None = None) -> None:
    """Lay out /var/tmp/nodeimage like packer's upload; ``tamper`` flips one byte of that artifact."""
    dest = root / STAGE
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "artifacts").mkdir(parents=True)
    lock = yaml.safe_load((standins / "artifacts.lock.yaml").read_text())
    for name, component in build["components"].items():
        entry = lock["artifacts"][name]["arches"]
        url = (entry.get(build["arch"]) or entry["all"])["url"]
        parts = urlsplit(url)
        data = bytearray((standins / "mirror" / parts.netloc / parts.path.lstrip("/")).read_bytes())
        if name == tamper:
            data[len(data) // 2] ^= 0xFF
        (dest / component["file"]).write_bytes(bytes(data))
    (dest / "build.json").write_text(json.dumps(build, indent=2))
    shutil.copytree(REPO / "provision" / "files", dest / "files")
    for script in ["lib.sh", *STEPS]:
        shutil.copy2(REPO / "provision" / script, dest / script)


@dataclass
class Run:
    step: str
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str] | None = None
    changes: list[str] = field(default_factory=list)


@dataclass
class Provisioned:
    root: Path
    tamper: subprocess.CompletedProcess[str]
    tamper_changes: list[str]
    runs: dict[str, Run]
    acceptance: subprocess.CompletedProcess[str] | None


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Provisioned:
    _need(os.geteuid() == 0, "needs root (chroot, mount)")
    _need(shutil.which("mmdebstrap") is not None, "mmdebstrap not installed")
    tmp = tmp_path_factory.mktemp("chroot")
    tarball = base_tarball(tmp)
    root = tmp / "root"
    root.mkdir()
    subprocess.run(["tar", "-xpf", str(tarball), "-C", str(root)], check=True)
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    policy = root / "usr/sbin/policy-rc.d"  # no daemons started by package scripts in the chroot
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    try:
        profile = yaml.safe_load((REPO / "profiles" / f"{PROFILE}.yaml").read_text())
        standins = tmp / "standins"
        lock_path, _ = make_standins(REPO / "artifacts.lock.yaml", standins, profile["arch"])
        build = build_json(lock_path, profile)

        stage(root, standins, build, tamper=TAMPERED)
        before = snapshot(root)
        tamper = run_step(root, "00-verify.sh")
        tamper_changes = diff(before, snapshot(root))

        stage(root, standins, build)
        runs: dict[str, Run] = {}
        for step in STEPS:
            run = Run(step, run_step(root, step))
            runs[step] = run
            if run.first.returncode != 0:
                break
            after_first = snapshot(root)
            if step.startswith("99"):  # it removes the stage, as it must; stage again for the second run
                stage(root, standins, build)
            run.second = run_step(root, step)
            run.changes = diff(after_first, snapshot(root))
        policy.unlink()

        acceptance = None
        if all(r.first.returncode == 0 for r in runs.values()) and len(runs) == len(STEPS):
            shutil.rmtree(root / STAGE, ignore_errors=True)  # the second 99 run put it back
            acceptance = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/acceptance",
                 f"--hosts=chroot://{root}", "--standins", f"--nodeimage-profile={PROFILE}", "-rs"],
                cwd=REPO, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
        yield Provisioned(root, tamper, tamper_changes, runs, acceptance)
    finally:
        subprocess.run(["umount", "--lazy", str(root / "proc")], check=False)


@pytest.mark.e2e
def test_tampered_artifact_stops_verification(provisioned: Provisioned):
    out = provisioned.tamper
    assert out.returncode != 0, "00-verify.sh accepted a tampered artifact"
    assert f"artifact {TAMPERED}" in out.stderr
    assert "expected sha512:" in out.stderr and "actual   sha512:" in out.stderr


@pytest.mark.e2e
def test_tampered_artifact_installs_nothing(provisioned: Provisioned):
    assert provisioned.tamper_changes == []


@pytest.mark.e2e
@pytest.mark.parametrize("step", STEPS)
def test_step_succeeds(provisioned: Provisioned, step: str):
    run = provisioned.runs.get(step)
    assert run is not None, f"{step} did not run: an earlier step failed"
    assert run.first.returncode == 0, f"{step} failed:\n{run.first.stdout}\n{run.first.stderr}"


@pytest.mark.e2e
@pytest.mark.parametrize("step", STEPS)
def test_step_is_idempotent(provisioned: Provisioned, step: str):
    run = provisioned.runs.get(step)
    assert run is not None and run.second is not None, f"{step} was not run twice"
    assert run.second.returncode == 0, f"{step} failed on its second run:\n{run.second.stderr}"
    assert run.changes == [], f"{step} changed the tree on its second run:\n" + "\n".join(run.changes[:40])


@pytest.mark.e2e
def test_acceptance_suite_passes_on_the_tree(provisioned: Provisioned):
    out = provisioned.acceptance
    assert out is not None, "not run: a provision step failed"
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert " passed" in out.stdout


# --- fast: 00-verify.sh and lib.sh on a scratch stage (they only read it and write inside it) -----


@pytest.fixture
def scratch_stage(tmp_path: Path) -> tuple[Path, dict]:
    _need(os.geteuid() == 0, "the steps require root")
    profile = yaml.safe_load((REPO / "profiles" / f"{PROFILE}.yaml").read_text())
    lock_path, _ = make_standins(REPO / "artifacts.lock.yaml", tmp_path / "standins", profile["arch"])
    build = build_json(lock_path, profile)
    root = tmp_path / "root"
    stage(root, tmp_path / "standins", build)
    return root / STAGE, build


def run_on_stage(stage_dir: Path, script: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NODEIMAGE_STAGE": str(stage_dir)}
    return subprocess.run(["bash", str(stage_dir / script)], env=env, capture_output=True, text=True)


def test_verify_accepts_good_artifacts_and_marks_the_stage(scratch_stage):
    stage_dir, build = scratch_stage
    out = run_on_stage(stage_dir, "00-verify.sh")
    assert out.returncode == 0, out.stderr
    mark = (stage_dir / "verified").read_text()
    for component in build["components"].values():
        assert f"{component['checksum']}  {component['file']}" in mark


def test_verify_names_mismatch_and_leaves_no_mark(scratch_stage):
    stage_dir, build = scratch_stage
    (stage_dir / "verified").write_text("stale\n")
    target = stage_dir / build["components"]["crictl"]["file"]
    target.write_bytes(target.read_bytes() + b"x")
    out = run_on_stage(stage_dir, "00-verify.sh")
    assert out.returncode != 0
    actual = hashlib.sha256(target.read_bytes()).hexdigest()
    assert "artifact crictl (artifacts/crictl-v1.17.0-linux-amd64.tar.gz): checksum mismatch" in out.stderr
    assert f"expected {build['components']['crictl']['checksum']}" in out.stderr
    assert f"actual   sha256:{actual}" in out.stderr
    assert not (stage_dir / "verified").exists()


def test_verify_names_missing_artifact(scratch_stage):
    stage_dir, build = scratch_stage
    (stage_dir / build["components"]["conmon"]["file"]).unlink()
    out = run_on_stage(stage_dir, "00-verify.sh")
    assert out.returncode != 0 and "artifact conmon: file" in out.stderr and "is missing" in out.stderr


def test_verify_refuses_unrecorded_digest(scratch_stage):
    stage_dir, build = scratch_stage
    build["components"]["cri-o"]["checksum"] = None
    (stage_dir / "build.json").write_text(json.dumps(build))
    out = run_on_stage(stage_dir, "00-verify.sh")
    assert out.returncode != 0 and "component cri-o" in out.stderr and "invoke lock" in out.stderr


def test_install_steps_refuse_unverified_stage(scratch_stage):
    stage_dir, _ = scratch_stage
    env = {**os.environ, "NODEIMAGE_STAGE": str(stage_dir)}
    out = subprocess.run(
        ["bash", "-c", f"source {stage_dir}/lib.sh && require_verified"], env=env, capture_output=True, text=True
    )
    assert out.returncode != 0 and "run 00-verify.sh first" in out.stderr


def test_build_get_names_missing_key(scratch_stage):
    stage_dir, _ = scratch_stage
    env = {**os.environ, "NODEIMAGE_STAGE": str(stage_dir)}
    script = f"source {stage_dir}/lib.sh && component_version cri-o && component_version containerd"
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert out.stdout == "v1.17.2\n"
    assert out.returncode != 0 and "components.containerd" in out.stderr
