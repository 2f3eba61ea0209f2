"""Local clusters: one control plane and N workers booted from a node image under qemu.

``up`` renders each node's seed (the cluster's secrets are made once), starts
a private network and the VMs on overlays of the image (which is never
written), waits for SSH, then for each node's first boot to end
(:mod:`nodeimage.clusterwait`), and copies the admin kubeconfig out once the
control plane's bootstrap succeeded. What is running is recorded in
``<cluster dir>/state.json`` (:mod:`nodeimage.clusterstate`) so that ``down``
(another process, later) can stop exactly that and free everything.

``down`` does not depend on that record: each VM's qemu writes
``<cluster dir>/vms/<node>/<node>.pid`` and the private network hub
``vms/private-net.pid``, and ``down`` stops what those name when
``state.json`` is missing or corrupt. A pid is signalled only when
``/proc/<pid>/cmdline`` shows the process is that qemu (``-pidfile`` naming
that very file) or that hub, so a pid reused by another process is left
alone. ``down --purge`` deletes the cluster directory (CA key, token, seeds,
kubeconfig) and refuses while any of its VMs runs; nothing outside the
cluster directory is ever deleted, and a state file that names paths
outside it is treated as corrupt.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shlex
import shutil
from pathlib import Path

from nodeimage import vm
from nodeimage.clusterstate import ClusterState, NodeState, StateFileError, down_command
from nodeimage.clusterwait import wait_ready
from nodeimage.log import die, info, step, warn
from nodeimage.nodespec import API_PORT, NodeSpec, cluster_params
from nodeimage.privnet import hub_from_pidfile, start_private_net, stop_private_net
from nodeimage.procs import describe_process, is_running
from nodeimage.secrets import cluster_dir, create_cluster
from nodeimage.seed import seed_node
from nodeimage.sshkey import generate_keypair
from nodeimage.userpaths import os_errors

DEFAULT_NETWORK = "192.168.100.0/24"
FIRST_HOST = 10  # control plane .10, workers .11, .12, ...
MAX_WORKERS = 8


def _vms(n: int) -> str:
    return f"{n} VM" if n == 1 else f"{n} VMs"


def node_addresses(network: str, workers: int) -> list[tuple[str, str, str]]:
    """(name, role, ip/prefix) for the control plane and ``workers`` workers."""
    try:
        net = ipaddress.IPv4Network(network, strict=True)
    except ValueError as exc:
        die(f"invalid cluster network {network!r}: {exc}", hint="use an IPv4 CIDR such as 192.168.100.0/24")
    if not 0 <= workers <= MAX_WORKERS:
        die(f"invalid number of workers {workers}", hint=f"use 0 to {MAX_WORKERS} (each is a VM on this machine)")
    hosts = list(net.hosts())
    if len(hosts) < FIRST_HOST + workers:
        die(f"cluster network {network} is too small for {workers} workers", hint="use a /24")
    nodes = [("cp", "control-plane", f"{hosts[FIRST_HOST - 1]}/{net.prefixlen}")]
    nodes += [(f"worker-{i}", "worker", f"{hosts[FIRST_HOST - 1 + i]}/{net.prefixlen}") for i in range(1, workers + 1)]
    return nodes


def known_vms(directory: Path, state: ClusterState | None) -> list[vm.VM]:
    """The cluster's VMs as its state records them and as their pid files name them (one entry per pid)."""
    found: dict[int, vm.VM] = {}
    for node in state.nodes if state else []:
        found.setdefault(node.vm.pid, node.vm)
    vms = directory / "vms"
    if vms.is_dir() and not vms.is_symlink():
        for workdir in sorted(vms.iterdir()):
            if workdir.is_dir() and not workdir.is_symlink():
                machine = vm.from_pidfile(workdir)
                if machine is not None:
                    found.setdefault(machine.pid, machine)
    return list(found.values())


def running_vms(directory: Path, state: ClusterState | None) -> list[vm.VM]:
    """The cluster's VMs whose qemu runs (checked in /proc: a reused pid does not count)."""
    return [
        m for m in known_vms(directory, state)
        if is_running(m.pid) and vm.is_our_qemu(m.pid, m.workdir / f"{m.name}.pid")
    ]  # fmt: skip


def start(
    *,
    cluster: str,
    image: Path,
    workers: int,
    kubernetes_version: str,
    pod_cidr: str,
    service_cidr: str,
    network: str = DEFAULT_NETWORK,
    state_dir: Path | None = None,
    accel: str | None = None,
    cpus: int = 2,
    memory_mib: int = 2048,
    outbound: bool = True,
    image_repository: str = "registry.k8s.io",
) -> ClusterState:
    """Render seeds and start the private network and every VM; no waiting. Stops what it started on failure.

    ``outbound=False`` cuts every node off from everything but the private network and this machine's forwards.
    """
    directory = cluster_dir(cluster, state_dir)
    addresses = node_addresses(network, workers)
    image = Path(image).expanduser().resolve()
    if image.is_dir():
        die(f"node image {image} is a directory, not a disk image (--image)", hint="pass the qcow2, e.g. --image "
            "build/k8s-1.17/node.qcow2")  # fmt: skip
    if not image.is_file():
        die(f"node image not found: {image}", hint="build one with `invoke build` or pass --image PATH")
    previous = ClusterState.load(directory)
    alive = running_vms(directory, previous)
    if alive:
        die(
            f"cluster {cluster!r} is already up ({_vms(len(alive))} running: {', '.join(m.name for m in alive)})",
            hint=f"`{down_command(directory)}` first",
        )

    cp_ip = addresses[0][2]
    params = cluster_params(
        cluster,
        kubernetes_version=kubernetes_version,
        pod_cidr=pod_cidr,
        service_cidr=service_cidr,
        control_plane_ip=cp_ip,
        image_repository=image_repository,
    )
    root_existed = directory.parent.is_dir()
    fresh = not directory.exists()
    try:
        with step(f"rendering seeds for cluster {cluster} ({len(addresses)} nodes)"):
            with os_errors(action="write cluster files in", path=directory, option="--state-dir"):
                create_cluster(directory, params)  # or reuse it, when the parameters are the same
                key = directory / "ssh" / "id_ed25519"
                if not key.is_file():
                    key.parent.mkdir(mode=0o700, exist_ok=True)
                    generate_keypair(key, comment=f"nodeimage-{cluster}")
                public = key.with_name(key.name + ".pub").read_text().strip()
            seeds = []
            for name, role, ip in addresses:
                macs = (vm.mac_for(f"{cluster}-{name}", 0), vm.mac_for(f"{cluster}-{name}", 1))
                node = NodeSpec(
                    role=role, name=name, ip=ip, nat_nic=macs[0], private_nic=macs[1], ssh_public_key=public
                )
                iso = seed_node(
                    cluster=cluster,
                    node=node,
                    kubernetes_version=kubernetes_version,
                    pod_cidr=pod_cidr,
                    service_cidr=service_cidr,
                    control_plane_ip=cp_ip if role == "control-plane" else None,
                    state_dir=state_dir,
                    image_repository=image_repository,
                )
                seeds.append((name, role, ip.split("/")[0], iso, macs))
    except BaseException:
        # Nothing runs yet: what this call made (the cluster, the state directory) goes, so nothing half-made stays.
        if fresh and directory.is_dir():
            shutil.rmtree(directory)
        if not root_existed:
            with contextlib.suppress(OSError):
                directory.parent.rmdir()
        raise

    if accel is None:
        from nodeimage.accel import probe

        report = probe()
        accel = report.accelerator
        info(f"accelerator: {accel} ({report.reason})")
    state = ClusterState(cluster=cluster, directory=directory, image=image, accel=accel, ssh_key=key)
    state.api_port = vm.free_tcp_port()
    try:
        with step(f"starting {len(seeds)} VMs ({accel}) on a private network {network}"):
            with os_errors(action="write VM files in", path=directory / "vms", option="--state-dir"):
                (directory / "vms").mkdir(mode=0o700, exist_ok=True)
                (directory / "vms").chmod(0o700)  # ours: the overlays hold the secrets once a node booted
            state.net = start_private_net(directory / "vms")
            state.save()
            for name, _role, ip, iso, macs in seeds:
                spec = vm.VMSpec(
                    name=name,
                    disk=image,
                    seed_iso=iso,
                    cpus=cpus,
                    memory_mib=memory_mib,
                    accel=accel,
                    private_net=state.net,
                    nat_mac=macs[0],
                    private_mac=macs[1],
                    forwards=((state.api_port, API_PORT),) if _role == "control-plane" else (),
                    outbound=outbound,
                )
                machine = vm.start(spec, directory / "vms" / name)
                state.nodes.append(NodeState(name=name, role=_role, ip=ip, vm=machine))
                state.save()
    except BaseException:
        stop_all(state)
        raise
    return state


def describe(state: ClusterState) -> str:
    lines = [f"cluster {state.cluster}: {len(state.nodes)} nodes ({state.accel})"]
    for node in state.nodes:
        lines.append(f"  {node.name:<10} {node.role:<13} {node.ip:<15} {shlex.join(state.ssh(node))}")
    if state.kubeconfig:
        lines.append(f"  kubeconfig: {state.kubeconfig}")
    lines.append(f"  stop with: invoke down --cluster {state.cluster}")
    return "\n".join(lines)


def up(*, wait: bool = True, **kwargs: object) -> ClusterState:
    """Start a cluster and (unless ``wait`` is false) wait until every node's first boot succeeded."""
    state = start(**kwargs)  # type: ignore[arg-type]
    if wait:
        try:
            wait_ready(state)
        except BaseException:
            warn(f"cluster {state.cluster} is left running for inspection; `invoke down --cluster {state.cluster}`")
            raise
    info(describe(state))
    return state


def stop_all(state: ClusterState) -> None:
    """Stop every VM and the network ``state`` records, then remove the state and the VMs' files."""
    _stop(state.directory, state)


def _stop(directory: Path, state: ClusterState | None) -> int:
    """Stop the cluster's VMs and hub (by state and by pid files), free vms/ and state.json; count the VMs stopped.

    A pid file whose process is not that VM's qemu is reported and its process left alone.
    """
    stopped = 0
    for machine in known_vms(directory, state):
        pidfile = machine.workdir / f"{machine.name}.pid"
        if is_running(machine.pid) and not vm.is_our_qemu(machine.pid, pidfile):
            warn(
                f"{pidfile} names pid {machine.pid}, which is not this VM's qemu ({describe_process(machine.pid)}); "
                "left it alone"
            )
        stopped += vm.stop(machine, graceful=0)
    nets = [state.net] if state is not None and state.net is not None else []
    hub = hub_from_pidfile(directory / "vms")
    if hub is not None and all(hub.pid != n.pid for n in nets):
        nets.append(hub)
    for net in nets:
        stop_private_net(net)
    (directory / "state.json").unlink(missing_ok=True)
    vms = directory / "vms"
    if vms.is_dir() and not vms.is_symlink():
        shutil.rmtree(vms, ignore_errors=True)
    return stopped


def _purge(directory: Path) -> None:
    """Delete a stopped cluster's directory; refuse one that is not a nodeimage cluster or holds a mount."""
    if not (directory / "cluster.yaml").exists() and not (directory / "state.json").exists():
        die(
            f"{directory} is not a nodeimage cluster directory (no cluster.yaml): not deleting it",
            hint="check --cluster and --state-dir",
        )
    for root, dirs, _files in os.walk(directory):
        for d in dirs:
            if os.path.ismount(os.path.join(root, d)):
                die(f"{os.path.join(root, d)} is a mount point: not deleting {directory}", hint="unmount it first")
    try:
        shutil.rmtree(directory)
    except OSError as exc:
        die(f"could not delete all of {directory}: {exc}", hint="fix what the error names and purge again")
    info(f"removed {directory} (secrets, seeds, kubeconfig)")


def down(*, cluster: str, state_dir: Path | None = None, purge: bool = False) -> None:
    """Stop a cluster's VMs and network and free their files; ``purge`` deletes its directory, secrets included.

    Works without ``state.json`` (and with a corrupt one) by the VMs' pid files. ``purge`` refuses
    while any of the cluster's VMs runs: stopping a cluster and destroying its CA are two decisions.
    """
    directory = cluster_dir(cluster, state_dir)
    if not directory.exists():
        info(f"no cluster {cluster!r} in {directory.parent}: nothing to stop" + (" or delete" if purge else ""))
        return
    try:
        state = ClusterState.load(directory)
        corrupt = None
    except StateFileError as exc:
        state, corrupt = None, exc
    if purge:
        alive = running_vms(directory, state)
        if alive:
            die(
                f"cluster {cluster!r} is running ({_vms(len(alive))}: {', '.join(m.name for m in alive)}): "
                f"not deleting {directory}",
                hint=f"`{down_command(directory)}` first, then `{down_command(directory, purge=True)}`",
            )
    if corrupt is not None:
        warn(f"{corrupt.message}; stopping the cluster's VMs by their pid files instead")
    if state is None and corrupt is None and not (directory / "vms").exists():
        info(f"cluster {cluster} is not up (no {directory / 'state.json'}, no VMs)")
    else:
        with step(f"stopping cluster {cluster}"):
            count = _stop(directory, state)
        info(f"cluster {cluster}: {_vms(count)} stopped")
    if purge:
        _purge(directory)
