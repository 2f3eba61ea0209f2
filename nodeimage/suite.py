"""Run the image acceptance suite (tests/acceptance) against a booted copy of an image.

The suite is the same one users run against their own images; here the image
is booted on a throwaway overlay with a test-only NoCloud seed (a test user
and a fresh key), and pytest-testinfra reaches it over SSH.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from nodeimage import nocloud, ssh, vm
from nodeimage.log import die, step
from nodeimage.paths import REPO_ROOT, SUITE_DIR
from nodeimage.run import run
from nodeimage.sshkey import generate_keypair

TEST_USER = "nodeimage-test"
SSH_TIMEOUT_S = 900.0


def sudo_user_data(user: str, public_key: str) -> str:
    """user-data that creates one passwordless-sudo user reachable with ``public_key``, and nothing else.

    Used for the build user (packer) and the suite's test user; neither is
    the distro's default user, which is therefore not created at all.
    """
    doc = {
        "users": [
            {
                "name": user,
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "shell": "/bin/bash",
                "lock_passwd": True,
                "ssh_authorized_keys": [public_key],
            }
        ],
        "ssh_pwauth": False,
    }
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False)


def ssh_config(workdir: Path, control_dir: Path) -> Path:
    """Throwaway host keys are not checked; one multiplexed connection serves every check
    (testinfra asks for ControlMaster but sets no ControlPath, without which ssh does not share).
    ``control_dir`` must have a short path: a unix socket path is limited to 107 bytes."""
    path = workdir / "ssh_config"
    path.write_text(
        "Host *\n"
        "  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n"
        "  LogLevel ERROR\n"
        "  ConnectTimeout 20\n"
        f"  ControlPath {control_dir}/%C\n"
    )
    return path


def run_image_suite(
    image: Path,
    *,
    profile: str,
    accel: str,
    workdir: Path,
    extra_args: Sequence[str] = (),
    cpus: int = 2,
    memory_mib: int = 2048,
    lock_path: Path | None = None,
) -> None:
    """Boot ``image`` (on an overlay) and run the acceptance suite against it; die if it fails."""
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / "id_ed25519"
    public = generate_keypair(key, comment="nodeimage-suite")
    seed = workdir / "suite-seed.iso"
    nocloud.write_seed_iso(
        seed,
        user_data=sudo_user_data(TEST_USER, public),
        meta_data={"instance-id": "nodeimage-suite", "local-hostname": "nodeimage-suite"},
    )
    spec = vm.VMSpec(name="suite", disk=image, seed_iso=seed, cpus=cpus, memory_mib=memory_mib, accel=accel)
    with (
        step(f"booting {image.name} for the image suite ({accel})"),
        vm.booted(spec, workdir / "vm") as machine,
        tempfile.TemporaryDirectory(prefix="ni-ssh-") as control_dir,
    ):
        ssh.wait_for_ssh(machine, user=TEST_USER, key=key, timeout=SSH_TIMEOUT_S)
        hosts = [
            f"--hosts=ssh://{TEST_USER}@127.0.0.1:{machine.ssh_port}",
            f"--ssh-identity-file={key}",
            f"--ssh-config={ssh_config(workdir, Path(control_dir))}",
            "--sudo",
            "--booted",
        ]
        _run_pytest(hosts, profile=profile, extra_args=extra_args, what=f"{image} (booted)", lock_path=lock_path)


def run_tree_suite(
    tree: Path, *, profile: str, extra_args: Sequence[str] = (), lock_path: Path | None = None
) -> None:
    """Run the suite against an image's un-booted file tree (testinfra's chroot backend).

    This is where generalisation is checked: a boot regenerates machine-id
    and SSH host keys, so only the image as shipped can show they are absent.
    The suite runs commands in the chroot (version queries and the like), so
    it sees the tree through an overlay whose writes are thrown away: the
    image's content is not changed by being checked.
    """
    with tempfile.TemporaryDirectory(prefix=".suite-overlay-", dir=tree.parent) as tmp:
        upper, work, merged = Path(tmp) / "upper", Path(tmp) / "work", Path(tmp) / "merged"
        for d in (upper, work, merged):
            d.mkdir()
        run(
            ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={tree},upperdir={upper},workdir={work}", merged],
            capture=True,
        )
        try:
            _run_pytest(
                [f"--hosts={merged}", "--connection=chroot"],
                profile=profile,
                extra_args=extra_args,
                what=f"{tree} (un-booted)",
                lock_path=lock_path,
            )
        finally:
            run(["umount", merged], capture=True)


def _run_pytest(
    hosts: Sequence[str], *, profile: str, extra_args: Sequence[str], what: str, lock_path: Path | None = None
) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(SUITE_DIR),
        "-p",
        "no:cacheprovider",
        *hosts,
        f"--nodeimage-profile={profile}",
        *([f"--nodeimage-lock={Path(lock_path).resolve()}"] if lock_path else []),
        "-q",
        "-rs",
        *extra_args,
    ]
    with step(f"running the image suite (tests/acceptance) against {what}"):
        proc = run(cmd, check=False, cwd=REPO_ROOT, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    if proc.returncode != 0:
        die(
            f"the image suite failed against {what} (pytest exit code {proc.returncode})",
            hint="the failures are listed above; `invoke build --skip-suite` builds without it (not recommended)",
        )
