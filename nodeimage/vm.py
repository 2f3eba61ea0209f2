"""Boot node images under qemu for tests and local clusters, without ever modifying them.

Each VM runs on a throwaway qcow2 overlay backed by the image, with SSH
forwarded to a free port on 127.0.0.1 and its serial console in a file (the
first place to look when a boot goes wrong). qemu daemonizes, so VMs outlive
the command that started them (``invoke up`` / ``invoke down``); the pid file
and the monitor socket in the VM's work directory are how they are found again.

VMs of one cluster share a private Ethernet segment, :class:`PrivateNet`: a
small UDP hub on 127.0.0.1 that repeats every frame to every other VM. qemu
7.2's ``-netdev socket,mcast=`` would need multicast routing on the host and
``dgram``/``socket,udp=`` alone is point-to-point, so the hub is what makes N
nodes possible. Its limits, said plainly: it is a hub (floods, no MAC learning),
it runs in Python (a few thousand frames per second, plenty for kubeadm and
pings, not for benchmarks), and no frame ever leaves 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from nodeimage.log import NodeimageError, debug, die, info
from nodeimage.run import output, run, which

ACCELERATORS = ("tcg", "kvm")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
_HUB_REGISTER = b"nodeimage-hub-register"
HUB_PIDFILE = "private-net.pid"


# --- the private network -----------------------------------------------------------------------


@dataclass(frozen=True)
class PrivateNet:
    """A running UDP hub on 127.0.0.1 that joins the VMs' second NICs into one segment."""

    hub_port: int
    pid: int
    log: Path

    @property
    def pidfile(self) -> Path:
        return self.log.with_name(HUB_PIDFILE)

    def to_dict(self) -> dict:
        return {"hub_port": self.hub_port, "pid": self.pid, "log": str(self.log)}

    @classmethod
    def from_dict(cls, data: dict) -> PrivateNet:
        return cls(hub_port=int(data["hub_port"]), pid=int(data["pid"]), log=Path(data["log"]))


def start_private_net(workdir: Path) -> PrivateNet:
    """Start the hub process; it runs until :func:`stop_private_net`."""
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "private-net.log"
    pidfile = workdir / HUB_PIDFILE
    # The parent binds the socket and hands it over, so the port is known
    # and reserved before the hub runs: no window where another process takes it.
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    with open(log, "ab") as fh:
        # A daemon, not a command that completes, so it cannot go through run().
        # Its command line names its pid file: that is how `down` tells it from a process that reused its pid.
        proc = subprocess.Popen(
            [sys.executable, "-m", "nodeimage.vm", "hub", str(sock.fileno()), str(pidfile)],
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=fh,
            pass_fds=(sock.fileno(),),
            start_new_session=True,
            env=env,
        )
    sock.close()
    pidfile.write_text(f"{proc.pid}\n")
    time.sleep(0.2)
    if proc.poll() is not None:
        pidfile.unlink(missing_ok=True)
        die(f"the private network hub exited at start (code {proc.returncode})", hint=f"see {log}")
    info(f"private network: UDP hub on 127.0.0.1:{port} (pid {proc.pid})")
    return PrivateNet(hub_port=port, pid=proc.pid, log=log)


def stop_private_net(net: PrivateNet) -> None:
    """Stop the hub (no error if it is already gone); a process that merely reused its pid is left alone."""
    if is_running(net.pid) and is_our_hub(net.pid, net.pidfile):
        _terminate(net.pid, grace=3.0)
    net.pidfile.unlink(missing_ok=True)


def hub_from_pidfile(workdir: Path) -> PrivateNet | None:
    """The hub of ``workdir`` found by its pid file (for `down` when the cluster's state file is lost)."""
    pid = read_pidfile(workdir / HUB_PIDFILE)
    if pid is None:
        return None
    return PrivateNet(hub_port=0, pid=pid, log=workdir / "private-net.log")


@contextlib.contextmanager
def private_net(workdir: Path) -> Iterator[PrivateNet]:
    """A private network for the duration of a ``with`` block."""
    net = start_private_net(workdir)
    try:
        yield net
    finally:
        stop_private_net(net)


def _register_port(net: PrivateNet) -> int:
    """Reserve a UDP port for one VM and announce it to the hub before qemu binds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.sendto(_HUB_REGISTER, ("127.0.0.1", net.hub_port))
    return port


def _hub_main(fd: int) -> None:
    """Repeat every frame from one registered peer to all the others."""
    sock = socket.socket(fileno=fd)
    peers: set[tuple[str, int]] = set()
    print(f"hub listening on {sock.getsockname()}", flush=True)
    while True:
        data, addr = sock.recvfrom(65536)
        if data == _HUB_REGISTER:
            peers.add(addr)
            print(f"peer registered: {addr[0]}:{addr[1]}", flush=True)
            continue
        if addr not in peers:
            # A qemu restarted on a new port also announces itself by sending.
            peers.add(addr)
            print(f"peer learned: {addr[0]}:{addr[1]}", flush=True)
        for peer in peers:
            if peer != addr:
                with contextlib.suppress(OSError):
                    sock.sendto(data, peer)


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
    private_port = _register_port(spec.private_net) if spec.private_net is not None else None
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


def is_running(pid: int) -> bool:
    if pid <= 1:  # 0 and -1 would address process groups; 1 is init: never a VM of ours
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); treat it as gone.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    # So does a zombie whose parent is another process (a qemu killed by `down` run from elsewhere).
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def serial_tail(vm: VM, lines: int = 30) -> str:
    """The last ``lines`` lines of the VM's serial console, for error messages."""
    try:
        text = vm.serial_log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no serial log)"
    tail = [line.rstrip("\r") for line in text.splitlines()[-lines:]]
    return "\n".join(tail) or "(serial log is empty)"


def ssh_command(vm: VM, *, user: str, key: Path) -> list[str]:
    """The ssh command that reaches ``vm`` (printed for users, used by :func:`ssh_run`)."""
    return [
        "ssh",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR",
        "-o", "ConnectTimeout=10",
        "-i", str(key),
        "-p", str(vm.ssh_port),
        f"{user}@127.0.0.1",
    ]  # fmt: skip


def wait_for_ssh(vm: VM, *, user: str, key: Path, timeout: float = 600, every: float = 15) -> None:
    """Poll until ``user`` can run a command on ``vm``; die with the serial console's tail if not."""
    start_t = time.monotonic()
    last_report = start_t
    while True:
        elapsed = time.monotonic() - start_t
        if not is_running(vm.pid):
            die(
                f"vm {vm.name} stopped while waiting for SSH (after {elapsed:.0f} s); last serial output:\n"
                + serial_tail(vm),
                hint=f"full console log: {vm.serial_log}",
            )
        try:
            proc = run([*ssh_command(vm, user=user, key=key), "true"], check=False, capture=True, timeout=60)
            ok = proc.returncode == 0
        except NodeimageError:  # this attempt timed out: a slow guest, try again
            ok = False
        if ok:
            info(f"vm {vm.name}: SSH is up after {elapsed:.0f} s")
            return
        elapsed = time.monotonic() - start_t
        if elapsed > timeout:
            die(
                f"vm {vm.name}: no SSH on 127.0.0.1:{vm.ssh_port} after {timeout:.0f} s; last serial output:\n"
                + serial_tail(vm),
                hint=f"full console log: {vm.serial_log}",
            )
        if time.monotonic() - last_report >= every:
            info(f"waiting for SSH on vm {vm.name} ({elapsed:.0f} s) …")
            last_report = time.monotonic()
        time.sleep(3)


def ssh_run(
    vm: VM, user: str, key: Path, cmd: list[str], *, check: bool = True, timeout: float | None = 300
) -> subprocess.CompletedProcess[bytes]:
    """Run ``cmd`` on ``vm`` over SSH (quoted for the remote shell) and capture its output."""
    remote = shlex.join(cmd)
    return run([*ssh_command(vm, user=user, key=key), remote], check=check, capture=True, timeout=timeout)


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


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not is_running(pid):
            return True
        time.sleep(0.3)
    return not is_running(pid)


def read_pidfile(path: Path) -> int | None:
    """The pid in a pid file, or None when there is no such file or it holds no usable pid."""
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 1 else None


def _cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return []


def describe_process(pid: int) -> str:
    """A process's command line for messages (shortened)."""
    text = " ".join(os.fsdecode(a) for a in _cmdline(pid))
    return (text[:120] + " …") if len(text) > 120 else text or "(gone)"


def is_our_qemu(pid: int, pidfile: Path) -> bool:
    """Whether ``pid`` is a qemu started with ``-pidfile <pidfile>``: a recycled pid never is."""
    args = _cmdline(pid)
    if not args or not Path(os.fsdecode(args[0])).name.startswith("qemu-system-"):
        return False
    want = os.fsencode(str(pidfile))
    return any(a == b"-pidfile" and b == want for a, b in zip(args, args[1:], strict=False))


def is_our_hub(pid: int, pidfile: Path) -> bool:
    """Whether ``pid`` is a private network hub whose command line names ``pidfile`` (see start_private_net)."""
    args = _cmdline(pid)
    return b"nodeimage.vm" in args and b"hub" in args and os.fsencode(str(pidfile)) in args


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


def _terminate(pid: int, grace: float) -> None:
    if not is_running(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, grace):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 5)


def stop(vm: VM, *, graceful: float = 20) -> bool:
    """Power ``vm`` off (ACPI first, then SIGTERM, then SIGKILL) and delete its overlay.

    Only a qemu whose command line names this VM's pid file is signalled (guard against a recycled
    pid). Returns whether a running qemu was stopped.
    """
    running = is_running(vm.pid) and is_our_qemu(vm.pid, vm.workdir / f"{vm.name}.pid")
    if running:
        if graceful > 0 and _monitor(vm, "system_powerdown") and _wait_gone(vm.pid, graceful):
            debug(f"vm {vm.name} powered off")
        elif not (_monitor(vm, "quit") and _wait_gone(vm.pid, 5)):
            _terminate(vm.pid, grace=5)
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
    if len(sys.argv) in (3, 4) and sys.argv[1] == "hub":
        _hub_main(int(sys.argv[2]))  # argv[3], the pid file, is only there to be read in /proc/<pid>/cmdline
    else:
        sys.exit("usage: python -m nodeimage.vm hub FD [PIDFILE]")
