"""A local cluster's record, ``<cluster dir>/state.json``: what ``up`` started, for ``down`` to stop later.

``up`` and ``down`` are different processes, so what runs (the VMs, the
private network hub, the forwarded ports, the kubeconfig) is written down
here after each step. The record is trusted only as far as it is checked: a
file that is not the JSON ``up`` writes, or that names pids 0/1 or paths
outside the cluster's ``vms/``, raises :class:`StateFileError`, and ``down``
then stops the cluster by its pid files instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from nodeimage.fsutil import atomic_write
from nodeimage.log import NodeimageError
from nodeimage.privnet import PrivateNet
from nodeimage.secrets import DEFAULT_STATE_DIR
from nodeimage.seedrender import ADMIN_USER
from nodeimage.ssh import ssh_command
from nodeimage.vm import VM


class StateFileError(NodeimageError):
    """``state.json`` exists but is not the record ``up`` writes (``down`` recovers without it)."""


def down_command(directory: Path, *, purge: bool = False) -> str:
    """The `invoke down` command line for the cluster in ``directory`` (for hints)."""
    extra = "" if directory.parent == DEFAULT_STATE_DIR.resolve() else f" --state-dir {directory.parent}"
    return f"invoke down --cluster {directory.name}{extra}" + (" --purge" if purge else "")


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@dataclass
class NodeState:
    """One node of the record: its name, role, private address and running VM."""

    name: str
    role: str
    ip: str
    vm: VM

    def to_dict(self) -> dict:
        return {"name": self.name, "role": self.role, "ip": self.ip, "vm": self.vm.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> NodeState:
        return cls(name=data["name"], role=data["role"], ip=data["ip"], vm=VM.from_dict(data["vm"]))


@dataclass
class ClusterState:
    """What ``up`` started; the file ``down`` reads."""

    cluster: str
    directory: Path
    image: Path
    accel: str
    ssh_key: Path
    net: PrivateNet | None = None
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
                net=PrivateNet.from_dict(data["net"]) if data.get("net") else None,
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
        return ssh_command(node.vm, user=ADMIN_USER, key=self.ssh_key)

    def testinfra_hosts(self) -> list[str]:
        return [f"ssh://{ADMIN_USER}@127.0.0.1:{n.vm.ssh_port}" for n in self.nodes]

