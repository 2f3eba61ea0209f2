"""Run provision steps in a chroot of an image's file tree, on the build host.

The stack and node layers install files only (no daemon runs, nothing is
downloaded), so they need no VM: each step runs as root in a chroot of the
tree, inside a private mount namespace (``unshare --mount``) that holds
``/proc``, ``/dev`` and the stage directory bound read-only at ``/var/tmp/nodeimage``
(its artifacts are hard links into the download cache: a step cannot change them).
When the step ends the namespace ends with it, so no mount can be left
behind in the tree, whatever happens to this process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from nodeimage.log import die, step
from nodeimage.run import run, which

STAGE_IN_TREE = "/var/tmp/nodeimage"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Runs in the new mount namespace: mounts what a step needs, then becomes the step.
_ENTER = r"""
set -eu
tree=$1 stage=$2
shift 2
mount -t proc proc "$tree/proc"
mount --rbind /dev "$tree/dev"
mount --make-rslave "$tree/dev"
mkdir -p "$tree/var/tmp/nodeimage"
mount --bind "$stage" "$tree/var/tmp/nodeimage"
mount -o remount,bind,ro "$tree/var/tmp/nodeimage"
exec chroot "$tree" "$@"
"""


def chroot_command(tree: Path, stage: Path, argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The command that runs ``argv`` in a chroot of ``tree`` with ``stage`` at /var/tmp/nodeimage."""
    environment = [f"{k}={v}" for k, v in {"PATH": PATH, "LC_ALL": "C.UTF-8", "HOME": "/root", **env}.items()]
    return [
        which("unshare", "util-linux"),
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        _ENTER,
        "nodeimage-chroot",
        str(Path(tree).resolve()),
        str(Path(stage).resolve()),
        "/usr/bin/env",
        "-i",
        *environment,
        *argv,
    ]


def run_steps(tree: Path, stage: Path, layer: str, *, env: Mapping[str, str] | None = None) -> None:
    """Run every step of ``layer`` (stage/<layer>/steps/NN-*.sh) in order, in a chroot of ``tree``."""
    steps = sorted((Path(stage) / layer / "steps").glob("[0-9][0-9]-*.sh"))
    if not steps:
        die(f"no {layer} steps in {stage}")
    for script in ("proc", "dev", "usr/bin/env", "bin/bash"):
        if not (Path(tree) / script).exists():
            die(f"{tree} is not a root file tree (no /{script})")
    base_env = {"NODEIMAGE_STAGE": STAGE_IN_TREE, "DEBIAN_FRONTEND": "noninteractive", **(env or {})}
    for script in steps:
        with step(f"{layer}/{script.name} (chroot)"):
            proc = run(
                chroot_command(tree, stage, ["bash", f"{STAGE_IN_TREE}/{layer}/steps/{script.name}"], base_env),
                check=False,
            )
            if proc.returncode != 0:
                die(
                    f"provision step {layer}/{script.name} failed (exit code {proc.returncode})",
                    hint="its messages are above; the step ran in a chroot of the image tree on this machine",
                )
