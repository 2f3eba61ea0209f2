"""Waiting for a started cluster: SSH on every node, then each node's first boot, then the admin kubeconfig.

A node's first boot is nodeimage-bootstrap, run by cloud-init; it leaves
:data:`SUCCESS` or :data:`FAILURE` (naming the failed step) under
/run/nodeimage. A failure, a VM that stops, or a timeout is one error with
the command that reaches the node and the log to read there.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from nodeimage.clusterstate import ClusterState, NodeState
from nodeimage.fsutil import atomic_write
from nodeimage.log import NodeimageError, die, info, step
from nodeimage.nodespec import API_PORT
from nodeimage.procs import is_running
from nodeimage.seedrender import ADMIN_USER
from nodeimage.ssh import ssh_run, wait_for_ssh
from nodeimage.vm import serial_tail

SUCCESS = "/run/nodeimage/bootstrap-success.complete"
FAILURE = "/run/nodeimage/bootstrap-failure"
BOOTSTRAP_LOG = "/var/log/nodeimage-bootstrap.log"


def wait_ready(state: ClusterState, *, ssh_timeout: float = 900, bootstrap_timeout: float = 1800) -> None:
    """Wait for SSH on every node, then for every node's first boot; copy the admin kubeconfig out."""
    for node in state.nodes:
        with step(f"waiting for SSH on {node.name}"):
            wait_for_ssh(node.vm, user=ADMIN_USER, key=state.ssh_key, timeout=ssh_timeout)
    for node in state.nodes:
        with step(f"waiting for the first boot of {node.name} ({node.role}) to finish"):
            wait_bootstrap(state, node, timeout=bootstrap_timeout)
        if node.role == "control-plane":
            copy_kubeconfig(state, node)
    state.save()


def status_script(success: str = SUCCESS, failure: str = FAILURE) -> str:
    """The shell program that tells a node's first-boot state, run on the node as root.

    cloud-init's state is read *before* the markers: runcmd waits for the
    bootstrap, so when cloud-init was already finished, the markers are final.
    Reading the markers first raced: the bootstrap and cloud-init could both
    finish during the seconds `cloud-init status` takes on a slow guest, and a
    node that had just succeeded was reported as never run.
    """
    return (
        "ci=$(cloud-init status --long 2>/dev/null || true); "  # exits 1 on error: not an SSH failure
        f"if [ -e {success} ]; then echo ok; "
        f"elif [ -e {failure} ]; then echo failed; cat {failure}; "
        "elif printf '%s\\n' \"$ci\" | grep -Eq '^status: (done|error)'; then echo not-run; printf '%s\\n' \"$ci\"; "
        "else echo running; fi; exit 0"
    )


def bootstrap_status(state: ClusterState, node: NodeState) -> tuple[str, str]:
    """("ok" | "failed" | "running" | "not-run", detail) for one node's first boot."""
    script = status_script()
    try:
        proc = ssh_run(node.vm, ADMIN_USER, state.ssh_key, ["sudo", "sh", "-c", script], check=False, timeout=60)
    except NodeimageError:  # timed out: a slow guest
        return "running", "(no answer over SSH)"
    if proc.returncode != 0:
        return "running", f"(ssh exit code {proc.returncode}: {proc.stderr.decode(errors='replace').strip()[-300:]})"
    first, _, rest = proc.stdout.decode(errors="replace").partition("\n")
    return first.strip() or "running", rest.strip()


def wait_bootstrap(state: ClusterState, node: NodeState, *, timeout: float = 1800, every: float = 30) -> None:
    start_t = time.monotonic()
    last = start_t
    while True:
        status, detail = bootstrap_status(state, node)
        elapsed = time.monotonic() - start_t
        if status == "ok":
            info(f"{node.name}: first boot succeeded after {elapsed:.0f} s")
            return
        if status in ("failed", "not-run"):
            what = (
                "the bootstrap failed"
                if status == "failed"
                else "cloud-init finished but nodeimage-bootstrap left no result (is it in the image?)"
            )
            die(
                f"{node.name}: {what}:\n{detail}",
                hint=f"see {BOOTSTRAP_LOG} and /var/log/cloud-init-output.log on the node: "
                f"{shlex.join(state.ssh(node))}",
            )
        if not is_running(node.vm.pid):
            die(f"{node.name}: the VM stopped during its first boot:\n{serial_tail(node.vm)}")
        if elapsed > timeout:
            die(
                f"{node.name}: first boot not finished after {timeout:.0f} s",
                hint=f"look at {BOOTSTRAP_LOG} on the node: {shlex.join(state.ssh(node))}",
            )
        if time.monotonic() - last >= every:
            info(f"{node.name}: first boot still running ({elapsed:.0f} s) … {detail}".rstrip())
            last = time.monotonic()
        time.sleep(10)


def copy_kubeconfig(state: ClusterState, node: NodeState) -> Path:
    """Copy /etc/kubernetes/admin.conf out (0600): it is cluster-admin, treat it like the CA key."""
    proc = ssh_run(node.vm, ADMIN_USER, state.ssh_key, ["sudo", "cat", "/etc/kubernetes/admin.conf"])
    text = proc.stdout.decode()
    if state.api_port:
        # The API server's certificate names 127.0.0.1 (seed.py adds it), so the forward can be used as is.
        text = text.replace(f"https://{node.ip}:{API_PORT}", f"https://127.0.0.1:{state.api_port}")
    path = state.directory / "admin.conf"
    atomic_write(path, text, mode=0o600)
    state.kubeconfig = path
    state.save()
    info(f"admin kubeconfig: {path} (API server forwarded to 127.0.0.1:{state.api_port})")
    return path
