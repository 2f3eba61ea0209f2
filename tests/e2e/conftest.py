"""End-to-end fixtures: stand-in upstream artifacts, then one real `invoke build` per session.

The build goes through the same code users run (fetch through a mirror,
`invoke base` from Debian's mirror, packer with qemu under the probed
accelerator, the provision scripts, the image suite). Only the upstream
artifacts are stand-ins (tests/standins), because their hosts cannot be
reached here. Its output is streamed to the terminal so a CI log shows it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.standins.make_standins import images_dir, make_standins
from tests.standins.registry import push_images, running_registry

REPO = Path(__file__).resolve().parents[2]
PROFILE = "k8s-1.17-debian12"
CURRENT_PROFILE = "k8s-1.36-debian12"  # the current stack's e2e profile (test_current_stack_e2e, test_capi_e2e)
# Base images are cached here between local runs (a fresh CI clone builds them once).
E2E_ROOT = REPO / "build" / "e2e"


@dataclass(frozen=True)
class StandIns:
    lock: Path
    mirror: Path
    images: Path  # OCI layouts of the stand-in container images, <dir>/<registry>/<path>
    registry: str  # http://127.0.0.1:PORT: a real registry serving them, as a registry mirror


@dataclass(frozen=True)
class E2EBuild:
    out_root: Path
    build_dir: Path
    image: Path
    cache: Path
    standins: StandIns
    log: Path

    def invoke_args(self) -> list[str]:
        return [
            "--profile",
            PROFILE,
            f"--lock-file={self.standins.lock}",
            f"--mirror={self.standins.mirror}",
            f"--registry-mirror={self.standins.registry}",
            f"--out={self.out_root}",
            "--formats=qcow2,ova",
            "--suite-args=--standins",
        ]


def invoke(
    args: list[str], *, env: dict[str, str], log: Path, stream: bool, timeout: float = 3600, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run `invoke ARGS` from the repo (or the checkout ``cwd``); tee its output to ``log`` (and the terminal
    if ``stream``)."""
    cmd = [sys.executable, "-m", "invoke", *args]
    lines: list[str] = []
    with (
        subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc,
        log.open("a") as fh,
    ):
        assert proc.stdout is not None
        fh.write(f"$ invoke {' '.join(args)}\n")
        for line in proc.stdout:
            fh.write(line)
            lines.append(line)
            if stream:
                sys.__stdout__.write(line)
                sys.__stdout__.flush()
        rc = proc.wait(timeout=timeout)
    return subprocess.CompletedProcess(cmd, rc, "".join(lines), "")


@pytest.fixture(scope="session")
def standins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIns]:
    """Stand-in artifacts in a mirror directory, and stand-in images in a real registry on the loopback."""
    lock, mirror = make_standins(REPO / "artifacts.lock.yaml", tmp_path_factory.mktemp("standins"))
    with running_registry(tmp_path_factory.mktemp("registry")) as url:
        push_images(images_dir(lock), url)
        yield StandIns(lock=lock, mirror=mirror, images=images_dir(lock), registry=url)


@pytest.fixture(scope="session")
def e2e_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = dict(os.environ)
    env["NODEIMAGE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    env.pop("NODEIMAGE_MIRROR", None)
    return env


@pytest.fixture(scope="session")
def e2e_build(
    standins: StandIns, e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[E2EBuild]:
    """One real build of the e2e image (Debian 12 base from Debian's mirror, stand-in upstream artifacts)."""
    out_root = tmp_path_factory.mktemp("out")
    base_cache = E2E_ROOT / "base"
    base_cache.mkdir(parents=True, exist_ok=True)
    (out_root / "base").symlink_to(base_cache)
    log = out_root / "build.log"
    b = E2EBuild(
        out_root=out_root,
        build_dir=out_root / PROFILE,
        image=out_root / PROFILE / "node.qcow2",
        cache=Path(e2e_env["NODEIMAGE_CACHE"]),
        standins=standins,
        log=log,
    )
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n=== e2e: invoke build {' '.join(b.invoke_args())}", flush=True)
        proc = invoke(["build", *b.invoke_args()], env=e2e_env, log=log, stream=True)
    if proc.returncode != 0:
        pytest.fail(f"e2e build failed (exit code {proc.returncode}); log: {log}\n{proc.stdout[-6000:]}")
    yield b


@pytest.fixture(scope="session")
def e2e_image(e2e_build: E2EBuild) -> Path:
    """The built e2e qcow2 (session-scoped: built once)."""
    return e2e_build.image


@dataclass(frozen=True)
class CurrentBuild:
    out_root: Path
    image: Path
    log: Path
    standins: StandIns


@pytest.fixture(scope="session")
def current_build(
    standins: StandIns, e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> CurrentBuild:
    """`invoke build --profile k8s-1.36-debian12` through the same mirror, registry and base as the classic e2e."""
    out_root = tmp_path_factory.mktemp("out36")
    base_cache = E2E_ROOT / "base"
    base_cache.mkdir(parents=True, exist_ok=True)
    (out_root / "base").symlink_to(base_cache)
    log = out_root / "build.log"
    args = [
        "build", "--profile", CURRENT_PROFILE, f"--lock-file={standins.lock}", f"--mirror={standins.mirror}",
        f"--registry-mirror={standins.registry}", f"--out={out_root}", "--formats=qcow2", "--suite-args=--standins",
    ]  # fmt: skip
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n=== e2e (current stack): invoke {' '.join(args)}", flush=True)
        proc = invoke(args, env=e2e_env, log=log, stream=True)
    if proc.returncode != 0:
        pytest.fail(f"current-stack build failed (exit code {proc.returncode}); log: {log}\n{proc.stdout[-6000:]}")
    return CurrentBuild(out_root, out_root / CURRENT_PROFILE / "node.qcow2", log, standins)
