"""What the benchmarks share: stand-in artifacts and images (served by a real registry on the loopback), a
base image, and `invoke` runs timed from a checkout. Nothing here asserts a timing."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.standins.make_standins import images_dir, make_standins  # noqa: E402
from tests.standins.registry import push_images, running_registry  # noqa: E402

PROFILE = "k8s-1.17-debian12"


@dataclass(frozen=True)
class Bench:
    work: Path
    lock: Path
    mirror: Path
    registry: str
    env: dict[str, str]

    def build_args(self, out: Path, *extra: str) -> list[str]:
        return ["build", "--profile", PROFILE, f"--lock-file={self.lock}", f"--mirror={self.mirror}",
                f"--registry-mirror={self.registry}", f"--out={out}", *extra]  # fmt: skip


@contextlib.contextmanager
def bench_setup(work: Path, base: Path | None = None) -> Iterator[Bench]:
    """Stand-ins, a running registry with the stand-in images, a fresh cache; ``base``: an existing base dir."""
    work.mkdir(parents=True, exist_ok=True)
    lock, mirror = make_standins(REPO / "artifacts.lock.yaml", work / "standins")
    env = {**os.environ, "NODEIMAGE_CACHE": str(work / "cache")}
    env.pop("NODEIMAGE_MIRROR", None)
    with running_registry(work / "registry") as url:
        push_images(images_dir(lock), url)
        yield Bench(work=work, lock=lock, mirror=mirror, registry=url, env=env)


def bench_options(doc: str | None, prefix: str) -> tuple[argparse.Namespace, Path]:
    """--keep DIR and --base DIR, the options every benchmark has; (options, work directory)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="work directory to use and keep (default: a temporary one)")
    parser.add_argument("--base", type=Path, default=REPO / "build" / "e2e" / "base",
                        help="directory of base images to reuse (built there if missing)")  # fmt: skip
    opts = parser.parse_args()
    return opts, opts.keep or Path(tempfile.mkdtemp(prefix=prefix))


def link_base(out: Path, base: Path) -> None:
    """Let a build in ``out`` reuse the base images in ``base`` (as the e2e does)."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "base").exists():
        (out / "base").symlink_to(base.resolve())


def invoke(args: list[str], env: dict[str, str], cwd: Path = REPO) -> tuple[float, str]:
    """Run `invoke ARGS`; (seconds, output); exit with its output when it fails."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False, stdin=subprocess.DEVNULL)  # fmt: skip
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"invoke {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed, proc.stdout + proc.stderr


def manifest(build_dir: Path) -> dict[str, object]:
    return json.loads((build_dir / "build-manifest.json").read_text())


def copy_checkout(dest: Path) -> Path:
    """The checkout's files (tracked and untracked, not ignored) under ``dest``, modes kept."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.split(b"\0")  # fmt: skip
    for name in filter(None, listed):
        src = REPO / os.fsdecode(name)
        if src.exists():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target, follow_symlinks=False)
    return dest
