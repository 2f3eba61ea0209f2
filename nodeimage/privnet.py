"""The private network of a local cluster: a UDP hub on 127.0.0.1 joining the VMs' second NICs.

VMs of one cluster share a private Ethernet segment, :class:`PrivateNet`: a
small UDP hub on 127.0.0.1 that repeats every frame to every other VM. qemu
7.2's ``-netdev socket,mcast=`` would need multicast routing on the host and
``dgram``/``socket,udp=`` alone is point-to-point, so the hub is what makes N
nodes possible. Its limits, said plainly: it is a hub (floods, no MAC learning),
it runs in Python (a few thousand frames per second, plenty for kubeadm and
pings, not for benchmarks), and no frame ever leaves 127.0.0.1.

The hub is a daemon, ``python -m nodeimage.privnet hub FD PIDFILE``: its
command line names its pid file, which is how a later ``down`` tells it from a
process that reused its pid (:func:`is_our_hub`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nodeimage.log import die, info
from nodeimage.paths import REPO_ROOT
from nodeimage.procs import cmdline, is_running, read_pidfile, terminate

HUB_PIDFILE = "private-net.pid"
_HUB_REGISTER = b"nodeimage-hub-register"
# The module the hub runs as; hubs started before it moved out of nodeimage.vm still run as that.
_HUB_MODULES = (b"nodeimage.privnet", b"nodeimage.vm")


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
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    with open(log, "ab") as fh:
        # A daemon, not a command that completes, so it cannot go through run().
        # Its command line names its pid file: that is how `down` tells it from a process that reused its pid.
        proc = subprocess.Popen(
            [sys.executable, "-m", "nodeimage.privnet", "hub", str(sock.fileno()), str(pidfile)],
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
        terminate(net.pid, grace=3.0)
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


def is_our_hub(pid: int, pidfile: Path) -> bool:
    """Whether ``pid`` is a private network hub whose command line names ``pidfile`` (see start_private_net)."""
    args = cmdline(pid)
    return any(m in args for m in _HUB_MODULES) and b"hub" in args and os.fsencode(str(pidfile)) in args


def register_port(net: PrivateNet) -> int:
    """Reserve a UDP port for one VM and announce it to the hub before qemu binds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.sendto(_HUB_REGISTER, ("127.0.0.1", net.hub_port))
    return port


def hub_main(fd: int) -> None:
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


def main(argv: list[str]) -> None:
    """``hub FD [PIDFILE]``; the pid file is only there to be read in /proc/<pid>/cmdline."""
    if len(argv) in (3, 4) and argv[1] == "hub":
        hub_main(int(argv[2]))
    else:
        sys.exit("usage: python -m nodeimage.privnet hub FD [PIDFILE]")


if __name__ == "__main__":
    main(sys.argv)
