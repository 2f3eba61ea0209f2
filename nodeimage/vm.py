"""Boot node images under qemu for tests and local clusters, without ever modifying them.

Each VM runs on a throwaway qcow2 overlay backed by the image, with SSH
forwarded to a free port on 127.0.0.1 and its serial console in a file (the
first place to look when a boot goes wrong). qemu daemonizes, so VMs outlive
the command that started them (``invoke up`` / ``invoke down``); the pid file
and the monitor socket in the VM's work directory are how they are found again.

A VM's second NIC may join a cluster's private network (:mod:`nodeimage.privnet`);
reaching a booted VM is :mod:`nodeimage.ssh`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from nodeimage.log import debug, die, info
from nodeimage.privnet import PrivateNet, register_port
from nodeimage.procs import cmdline, is_running, read_pidfile, terminate, wait_gone
from nodeimage.run import output, run, which

ACCELERATORS = ("tcg", "kvm")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


# --- VM specs and running VMs ------------------------------------------------------------------


@dataclass(frozen=True)
class VMSpec:
    """What to boot. ``disk`` is never written: the VM runs on an overlay."""

    name: str
    disk: Path
    seed_iso: Path | None = None
    cpus: int = 2
    memory_mib: int = 2048
    accel: str = "tcg"
    ssh_port: int | None = None
    private_net: PrivateNet | None = None
    private_mac: str | None = None
    nat_mac: str | None = None
    overlay_size: str | None = None  # e.g. "20G": grow the overlay beyond the image's size
    forwards: tuple[tuple[int, int], ...] = ()  # extra (host port on 127.0.0.1, guest port) TCP forwards
    # False: the NAT NIC reaches nothing outside (qemu user networking with restrict=on); DHCP and the
    # forwards from this machine still work. For air-gapped first boots.
    outbound: bool = True


@dataclass(frozen=True)
class VM:
    """A running VM and where its files are."""

    name: str
    pid: int
    ssh_port: int
    serial_log: Path
    overlay: Path
    workdir: Path
    monitor: Path

    def to_dict(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> VM:
        return cls(
            name=data["name"],
            pid=int(data["pid"]),
            ssh_port=int(data["ssh_port"]),
            serial_log=Path(data["serial_log"]),
            overlay=Path(data["overlay"]),
            workdir=Path(data["workdir"]),
            monitor=Path(data["monitor"]),
        )


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (qemu binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mac_for(name: str, nic: int) -> str:
    """A stable locally administered MAC for NIC ``nic`` of VM ``name`` (qemu's 52:54:00 prefix)."""
    digest = hashlib.sha256(f"{name}/{nic}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def _validate(spec: VMSpec) -> None:
    if not _NAME_RE.match(spec.name):
        die(f"invalid VM name {spec.name!r}", hint="use lower-case letters, digits and '-', at most 63 characters")
    if not spec.disk.is_file():
        die(f"VM disk image not found: {spec.disk}", hint="build it first (`invoke build`) or pass --image PATH")
    if spec.seed_iso is not None and not spec.seed_iso.is_file():
        die(f"seed ISO not found: {spec.seed_iso}", hint="render it with `invoke seed`")
    if spec.accel not in ACCELERATORS:
        die(f"invalid accelerator {spec.accel!r}", hint=f"use one of {', '.join(ACCELERATORS)}")
    if spec.cpus < 1 or spec.memory_mib < 256:
        die(f"too small a VM: {spec.cpus} CPUs, {spec.memory_mib} MiB", hint="use at least 1 CPU and 256 MiB")
    for mac in (spec.private_mac, spec.nat_mac):
        if mac is not None and not _MAC_RE.match(mac):
            die(f"invalid MAC address {mac!r}", hint="use six lower-case hex pairs, e.g. 52:54:00:12:34:56")
    if spec.private_mac is not None and spec.private_net is None:
        die(f"VM {spec.name}: a private MAC was given without a private network")


def disk_format(disk: Path) -> str:
    """The image format qemu-img sees (qcow2, raw, ...)."""
    info_json = output([which("qemu-img", "qemu-utils"), "info", "--output=json", disk])
    return str(json.loads(info_json)["format"])


def _restrict(spec: VMSpec) -> str:
    return "" if spec.outbound else ",restrict=on"


def qemu_command(
    spec: VMSpec,
    *,
    overlay: Path,
    serial_log: Path,
    monitor: Path,
    pidfile: Path,
    ssh_port: int,
    private_port: int | None = None,
) -> list[str]:
    """The qemu command line for ``spec`` (split out so tests can read it without booting)."""
    cmd = [
        "qemu-system-x86_64",
        "-name", spec.name,
        "-machine", "pc",
        "-accel", spec.accel,
        "-smp", str(spec.cpus),
        "-m", str(spec.memory_mib),
        "-display", "none",
        "-daemonize",
        "-pidfile", str(pidfile),
        "-serial", f"file:{serial_log}",
        "-monitor", f"unix:{monitor},server=on,wait=off",
        "-drive", f"file={overlay},if=virtio,format=qcow2",
        "-device", "virtio-rng-pci",
        "-netdev", f"user,id=nat{_restrict(spec)},hostfwd=tcp:127.0.0.1:{ssh_port}-:22"
        + "".join(f",hostfwd=tcp:127.0.0.1:{host}-:{guest}" for host, guest in spec.forwards),
        "-device", "virtio-net-pci,netdev=nat" + (f",mac={spec.nat_mac}" if spec.nat_mac else ""),
    ]  # fmt: skip
    if spec.accel == "kvm":
        cmd += ["-cpu", "host"]
    if spec.seed_iso is not None:
        cmd += ["-drive", f"file={spec.seed_iso.resolve()},media=cdrom,readonly=on,format=raw"]
    if spec.private_net is not None:
        if private_port is None:
            raise ValueError("private_port is required with a private network")
        cmd += [
            "-netdev", f"socket,id=priv,udp=127.0.0.1:{spec.private_net.hub_port},localaddr=127.0.0.1:{private_port}",
            "-device", "virtio-net-pci,netdev=priv" + (f",mac={spec.private_mac}" if spec.private_mac else ""),
        ]  # fmt: skip
    return cmd


def start(spec: VMSpec, workdir: Path) -> VM:
    """Boot ``spec`` in the background; files go to ``workdir`` (created, one per VM)."""
    _validate(spec)
    qemu = which("qemu-system-x86_64", "qemu-system-x86")
    qemu_img = which("qemu-img", "qemu-utils")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    overlay = workdir / f"{spec.name}.overlay.qcow2"
    serial_log = workdir / f"{spec.name}.serial.log"
    monitor = workdir / f"{spec.name}.monitor.sock"
    pidfile = workdir / f"{spec.name}.pid"
    for stale in (overlay, monitor, pidfile):
        stale.unlink(missing_ok=True)
    serial_log.write_bytes(b"")

    backing = spec.disk.resolve()
    create = [qemu_img, "create", "-q", "-f", "qcow2", "-F", disk_format(backing), "-b", str(backing), str(overlay)]
    if spec.overlay_size:
        create.append(spec.overlay_size)
    run(create, capture=True)

    ssh_port = spec.ssh_port or free_tcp_port()
    private_port = register_port(spec.private_net) if spec.private_net is not None else None
    cmd = qemu_command(
        spec,
        overlay=overlay,
        serial_log=serial_log,
        monitor=monitor,
        pidfile=pidfile,
        ssh_port=ssh_port,
        private_port=private_port,
    )
    cmd[0] = qemu
    try:
        run(cmd, capture=True, timeout=60)
    except BaseException:
        overlay.unlink(missing_ok=True)
        raise
    pid = int(pidfile.read_text().strip())
    vm = VM(
        name=spec.name,
        pid=pid,
        ssh_port=ssh_port,
        serial_log=serial_log,
        overlay=overlay,
        workdir=workdir,
        monitor=monitor,
    )
    info(f"started vm {spec.name} (pid {pid}, accel {spec.accel}, ssh 127.0.0.1:{ssh_port}, serial {serial_log})")
    return vm


def serial_tail(vm: VM, lines: int = 30) -> str:
    """The last ``lines`` lines of the VM's serial console, for error messages."""
    try:
        text = vm.serial_log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no serial log)"
    tail = [line.rstrip("\r") for line in text.splitlines()[-lines:]]
    return "\n".join(tail) or "(serial log is empty)"


def _monitor(vm: VM, command: str) -> bool:
    """Send one HMP command; False when the monitor is not reachable."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(3)
            sock.connect(str(vm.monitor))
            with contextlib.suppress(OSError):
                sock.recv(4096)  # the banner
            sock.sendall(command.encode() + b"\n")
            with contextlib.suppress(OSError):
                sock.recv(4096)
        return True
    except OSError:
        return False


def is_our_qemu(pid: int, pidfile: Path) -> bool:
    """Whether ``pid`` is a qemu started with ``-pidfile <pidfile>``: a recycled pid never is."""
    args = cmdline(pid)
    if not args or not Path(os.fsdecode(args[0])).name.startswith("qemu-system-"):
        return False
    want = os.fsencode(str(pidfile))
    return any(a == b"-pidfile" and b == want for a, b in zip(args, args[1:], strict=False))


def from_pidfile(workdir: Path) -> VM | None:
    """The VM of ``workdir`` (``<workdir>/<name>.pid``, as :func:`start` writes it), without its state record."""
    name = workdir.name
    pid = read_pidfile(workdir / f"{name}.pid")
    if pid is None:
        return None
    return VM(
        name=name,
        pid=pid,
        ssh_port=0,
        serial_log=workdir / f"{name}.serial.log",
        overlay=workdir / f"{name}.overlay.qcow2",
        workdir=workdir,
        monitor=workdir / f"{name}.monitor.sock",
    )


def stop(vm: VM, *, graceful: float = 20) -> bool:
    """Power ``vm`` off (ACPI first, then SIGTERM, then SIGKILL) and delete its overlay.

    Only a qemu whose command line names this VM's pid file is signalled (guard against a recycled
    pid). Returns whether a running qemu was stopped.
    """
    running = is_running(vm.pid) and is_our_qemu(vm.pid, vm.workdir / f"{vm.name}.pid")
    if running:
        if graceful > 0 and _monitor(vm, "system_powerdown") and wait_gone(vm.pid, graceful):
            debug(f"vm {vm.name} powered off")
        elif not (_monitor(vm, "quit") and wait_gone(vm.pid, 5)):
            terminate(vm.pid, grace=5)
    for path in (vm.overlay, vm.monitor, vm.workdir / f"{vm.name}.pid"):
        path.unlink(missing_ok=True)
    if running:
        info(f"stopped vm {vm.name}")
    else:
        debug(f"vm {vm.name} was not running")
    return running


@contextlib.contextmanager
def booted(spec: VMSpec, workdir: Path, *, graceful: float = 0) -> Iterator[VM]:
    """Boot ``spec`` for a ``with`` block and always stop it (test VMs need no clean shutdown)."""
    vm = start(spec, workdir)
    try:
        yield vm
    finally:
        stop(vm, graceful=graceful)


if __name__ == "__main__":
    # A process that loaded nodeimage before the hub moved to nodeimage.privnet still starts it this way.
    from nodeimage.privnet import main

    main(sys.argv)
