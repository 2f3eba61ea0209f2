"""Local clusters: one control plane and N workers booted from a node image under qemu.

``up`` renders each node's seed (the cluster's secrets are made once), starts
a private network and the VMs on overlays of the image (which is never
written), waits for SSH, then for each node's first boot to end, and copies
the admin kubeconfig out once the control plane's bootstrap succeeded.
What is running is recorded in ``<cluster dir>/state.json`` so that ``down``
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
import json
import os
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from nodeimage import vm
from nodeimage.fsutil import atomic_write
from nodeimage.log import NodeimageError, die, info, step, warn
from nodeimage.nodespec import API_PORT, NodeSpec, cluster_params, os_errors
from nodeimage.secrets import DEFAULT_STATE_DIR, cluster_dir, create_cluster
from nodeimage.seed import ADMIN_USER, seed_node
from nodeimage.sshkey import generate_keypair

REPO = Path(__file__).resolve().parents[1]
DEFAULT_NETWORK = "192.168.100.0/24"
FIRST_HOST = 10  # control plane .10, workers .11, .12, ...
MAX_WORKERS = 8
SUCCESS = "/run/nodeimage/bootstrap-success.complete"
FAILURE = "/run/nodeimage/bootstrap-failure"
BOOTSTRAP_LOG = "/var/log/nodeimage-bootstrap.log"


class StateFileError(NodeimageError):
    """``state.json`` exists but is not the record ``up`` writes (``down`` recovers without it)."""


def down_command(directory: Path, *, purge: bool = False) -> str:
    """The `invoke down` command line for the cluster in ``directory`` (for hints)."""
    extra = "" if directory.parent == DEFAULT_STATE_DIR.resolve() else f" --state-dir {directory.parent}"
    return f"invoke down --cluster {directory.name}{extra}" + (" --purge" if purge else "")


def _vms(n: int) -> str:
    return f"{n} VM" if n == 1 else f"{n} VMs"


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@dataclass
class NodeState:
    name: str
    role: str
    ip: str
    vm: vm.VM

    def to_dict(self) -> dict:
        return {"name": self.name, "role": self.role, "ip": self.ip, "vm": self.vm.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> NodeState:
        return cls(name=data["name"], role=data["role"], ip=data["ip"], vm=vm.VM.from_dict(data["vm"]))


@dataclass
class ClusterState:
    """What ``up`` started; the file ``down`` reads."""

    cluster: str
    directory: Path
    image: Path
    accel: str
    ssh_key: Path
    net: vm.PrivateNet | None = None
    nodes: list[NodeState] = field(default_factory=list)
    kubeconfig: Path | None = None
    api_port: int | None = None  # 127.0.0.1:<api_port> on this machine reaches the API server

    @property
    def state_file(self) -> Path:
        return self.directory / "state.json"

    def save(self) -> None:
        data = {
            "cluster": self.cluster,
            "image": str(self.image),
            "accel": self.accel,
            "ssh_key": str(self.ssh_key),
            "user": ADMIN_USER,
            "net": self.net.to_dict() if self.net else None,
            "nodes": [n.to_dict() for n in self.nodes],
            "kubeconfig": str(self.kubeconfig) if self.kubeconfig else None,
            "api_port": self.api_port,
        }
        atomic_write(self.state_file, json.dumps(data, indent=2) + "\n", mode=0o600)

    @classmethod
    def load(cls, directory: Path) -> ClusterState | None:
        """The recorded state, None when there is none; :class:`StateFileError` when it is corrupt."""
        path = directory / "state.json"
        if not path.exists() and not path.is_symlink():
            return None
        try:
            data = json.loads(path.read_text())
            state = cls(
                cluster=data["cluster"],
                directory=directory,
                image=Path(data["image"]),
                accel=data["accel"],
                ssh_key=Path(data["ssh_key"]),
                net=vm.PrivateNet.from_dict(data["net"]) if data.get("net") else None,
                nodes=[NodeState.from_dict(n) for n in data["nodes"]],
                kubeconfig=Path(data["kubeconfig"]) if data.get("kubeconfig") else None,
                api_port=data.get("api_port"),
            )
            state._check(directory)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise StateFileError(
                f"cluster state {path} is corrupt: not the JSON record `invoke up` writes ({detail})",
                hint=f"`{down_command(directory)}` stops the cluster's VMs by their pid files and removes it "
                "(the CA key, token and seeds stay); then start the cluster again",
            ) from None
        return state

    def _check(self, directory: Path) -> None:
        """Refuse a record that would make ``down`` signal pid 0/1 or delete files outside the cluster's vms/."""
        vms = directory / "vms"
        if self.cluster != directory.name:
            raise ValueError(f"it is the record of cluster {self.cluster!r}")
        for node in self.nodes:
            m = node.vm
            if m.workdir != vms / m.name or not all(_inside(p, m.workdir) for p in (m.overlay, m.monitor)):
                raise ValueError(f"node {node.name!r} names files outside {vms}")
            if m.pid <= 1:
                raise ValueError(f"node {node.name!r} has pid {m.pid}")
        if self.net is not None and (self.net.log.parent != vms or self.net.pid <= 1):
            raise ValueError("its private network entry is not this cluster's")

    def node(self, name: str) -> NodeState:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def ssh(self, node: NodeState) -> list[str]:
        return vm.ssh_command(node.vm, user=ADMIN_USER, key=self.ssh_key)

    def testinfra_hosts(self) -> list[str]:
        return [f"ssh://{ADMIN_USER}@127.0.0.1:{n.vm.ssh_port}" for n in self.nodes]


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
        if vm.is_running(m.pid) and vm.is_our_qemu(m.pid, m.workdir / f"{m.name}.pid")
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
            state.net = vm.start_private_net(directory / "vms")
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


def wait_ready(state: ClusterState, *, ssh_timeout: float = 900, bootstrap_timeout: float = 1800) -> None:
    """Wait for SSH on every node, then for every node's first boot; copy the admin kubeconfig out."""
    for node in state.nodes:
        with step(f"waiting for SSH on {node.name}"):
            vm.wait_for_ssh(node.vm, user=ADMIN_USER, key=state.ssh_key, timeout=ssh_timeout)
    for node in state.nodes:
        with step(f"waiting for the first boot of {node.name} ({node.role}) to finish"):
            wait_bootstrap(state, node, timeout=bootstrap_timeout)
        if node.role == "control-plane":
            copy_kubeconfig(state, node)
    state.save()


def bootstrap_status(state: ClusterState, node: NodeState) -> tuple[str, str]:
    """("ok" | "failed" | "running" | "not-run", detail) for one node's first boot."""
    script = (
        f"if [ -e {SUCCESS} ]; then echo ok; "
        f"elif [ -e {FAILURE} ]; then echo failed; cat {FAILURE}; "
        "elif cloud-init status 2>/dev/null | grep -Eq 'status: (done|error)'; then echo not-run; "
        "cloud-init status --long 2>/dev/null; "
        "else echo running; fi; exit 0"  # `cloud-init status` exits 1 on error: not an SSH failure
    )
    try:
        proc = vm.ssh_run(node.vm, ADMIN_USER, state.ssh_key, ["sudo", "sh", "-c", script], check=False, timeout=60)
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
        if not vm.is_running(node.vm.pid):
            die(f"{node.name}: the VM stopped during its first boot:\n{vm.serial_tail(node.vm)}")
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
    proc = vm.ssh_run(node.vm, ADMIN_USER, state.ssh_key, ["sudo", "cat", "/etc/kubernetes/admin.conf"])
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
        *[str(p) for p in (paths or [REPO / "tests" / "acceptance"])],
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
        if vm.is_running(machine.pid) and not vm.is_our_qemu(machine.pid, pidfile):
            warn(
                f"{pidfile} names pid {machine.pid}, which is not this VM's qemu ({vm.describe_process(machine.pid)}); "
                "left it alone"
            )
        stopped += vm.stop(machine, graceful=0)
    nets = [state.net] if state is not None and state.net is not None else []
    hub = vm.hub_from_pidfile(directory / "vms")
    if hub is not None and all(hub.pid != n.pid for n in nets):
        nets.append(hub)
    for net in nets:
        vm.stop_private_net(net)
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
