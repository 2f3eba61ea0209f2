"""The command that runs the acceptance suite (tests/acceptance) against booted nodes over SSH.

The nodes are a local cluster's (``--cluster``: its hosts, kubeconfig and an
ssh_config for its forwarded ports) or any hosts given as testinfra URLs.
"""

from __future__ import annotations

import os
from pathlib import Path

from nodeimage.clusterstate import ClusterState
from nodeimage.fsutil import atomic_write
from nodeimage.log import die
from nodeimage.paths import SUITE_DIR
from nodeimage.secrets import cluster_dir
from nodeimage.seedrender import ADMIN_USER


def write_ssh_config(state: ClusterState) -> Path:
    """An ssh_config for the cluster's forwarded SSH ports (throwaway host keys: no checking)."""
    path = state.directory / "ssh" / "config"
    text = (
        "Host 127.0.0.1\n"
        f"  User {ADMIN_USER}\n"
        f"  IdentityFile {state.ssh_key}\n"
        "  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n"
        "  LogLevel ERROR\n"
    )
    atomic_write(path, text, mode=0o600)
    return path


def acceptance_command(
    *,
    hosts: list[str],
    cluster: str | None = None,
    kubeconfig: Path | None = None,
    ssh_key: Path | None = None,
    ssh_config: Path | None = None,
    standins: bool = False,
    state_dir: Path | None = None,
    extra: list[str] | None = None,
    python: str = "python3",
    paths: list[Path] | None = None,
    sudo: bool = True,
) -> tuple[list[str], dict[str, str]]:
    """The pytest command (and environment) that runs tests/acceptance against booted nodes.

    The kubeconfig goes to the suite as NODEIMAGE_KUBECONFIG (the cluster layer reads it).
    ``sudo``: testinfra runs its commands through sudo (the first-boot files are root-only).
    """
    if cluster:
        state = ClusterState.load(cluster_dir(cluster, state_dir))
        if state is None:
            die(f"cluster {cluster!r} is not up", hint=f"`invoke up --cluster {cluster}` first, or pass --hosts")
        hosts = hosts or state.testinfra_hosts()
        ssh_config = ssh_config or write_ssh_config(state)
        kubeconfig = kubeconfig or state.kubeconfig
    if not hosts:
        die("no hosts to test", hint="pass --hosts ssh://user@host,... or --cluster NAME of a cluster from `invoke up`")
    for h in hosts:
        if "://" not in h:
            die(
                f"invalid host {h!r}",
                hint="use testinfra's form, e.g. ssh://ubuntu@10.0.0.5 or ssh://user@127.0.0.1:2222",
            )
    for path, what in ((kubeconfig, "kubeconfig"), (ssh_key, "SSH key"), (ssh_config, "ssh_config")):
        if path is not None and not Path(path).is_file():
            die(f"{what} not found: {path}")
    cmd = [
        python,
        "-m",
        "pytest",
        *[str(p) for p in (paths or [SUITE_DIR])],
        "-v",
        "-rs",
        "--booted",
        f"--hosts={','.join(hosts)}",
    ]
    if ssh_key:
        cmd.append(f"--ssh-identity-file={ssh_key}")
    if ssh_config:
        cmd.append(f"--ssh-config={ssh_config}")
    if sudo:
        cmd.append("--sudo")
    if standins:
        cmd.append("--standins")
    cmd += extra or []
    env = dict(os.environ)
    env.pop("NODEIMAGE_KUBECONFIG", None)
    if kubeconfig:
        env["NODEIMAGE_KUBECONFIG"] = str(Path(kubeconfig).resolve())
    return cmd, env
