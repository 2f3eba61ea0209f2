"""The nodes seeded for a cluster, as their records say, and the checks that keep two seeds from colliding.

Every node seeded for a cluster is recorded in
``<cluster>/nodes/<name>/node.json`` (name, role, address, where its seed
went), and a new seed is refused when its name or address is already another
node's, or when it would be a second control plane. Re-rendering the same
node (same name, role and address) replaces its seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from nodeimage.log import die
from nodeimage.nodespec import NodeSpec
from nodeimage.seedrender import BOOTSTRAP_PARAMS

NODE_RECORD = "node.json"


@dataclass(frozen=True)
class NodeRecord:
    """A node seeded for a cluster, as ``<cluster>/nodes/<name>/node.json`` records it."""

    name: str
    role: str
    ip: str
    seed: str  # the directory holding its seed
    profile: str | None = None


def _record_of_legacy_seed(seed_dir: Path) -> NodeRecord | None:
    """A seed written before node.json existed: its user-data's bootstrap parameters name the node."""
    user_data = seed_dir / "user-data"
    try:
        doc = yaml.safe_load(user_data.read_text())
        params = next(json.loads(f["content"]) for f in doc["write_files"] if f["path"] == BOOTSTRAP_PARAMS)
        return NodeRecord(params["node_name"], params["role"], params["node_ip"], str(seed_dir))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, json.JSONDecodeError, KeyError, TypeError, StopIteration):
        return None


def cluster_nodes(directory: Path) -> list[NodeRecord]:
    """Every node seeded for the cluster in ``directory`` (its node records, and older seeds without one)."""
    nodes_dir = directory / "nodes"
    if not nodes_dir.is_dir():
        return []
    found = []
    for entry in sorted(nodes_dir.iterdir()):
        if entry.name.startswith(".") or entry.is_symlink() or not entry.is_dir():
            continue
        record = entry / NODE_RECORD
        if record.is_file():
            try:
                data = json.loads(record.read_text())
                found.append(NodeRecord(**data))
            except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
                die(
                    f"node record {record} is unreadable: {exc}",
                    hint=f"if node {entry.name!r} is gone, remove {entry}; otherwise seed it again after removing it",
                )
        elif (legacy := _record_of_legacy_seed(entry)) is not None:
            found.append(legacy)
    return found


def check_collisions(node: NodeSpec, ip: str, cluster: str, directory: Path, existing: list[NodeRecord]) -> None:
    """Refuse a node whose name or address another node of the cluster has, or a second control plane."""
    for rec in existing:
        if rec.name == node.name and rec.role == node.role and rec.ip == ip:
            continue  # the same node again: its seed is re-rendered
        gone = f"if {rec.role} {rec.name!r} is gone for good, remove {directory / 'nodes' / rec.name} first"
        if node.role == "control-plane" and rec.role == "control-plane":
            die(
                f"cluster {cluster!r} already has a control plane, {rec.name!r} at {rec.ip}; "
                "a nodeimage cluster has one",
                hint=f"seed this node as a worker (--role worker), or use another --cluster; {gone}",
            )
        if rec.name == node.name:
            die(
                f"node name {node.name!r} is already used in cluster {cluster!r} by the {rec.role} at {rec.ip}",
                hint=f"give this node another --name; {gone}",
            )
        if rec.ip == ip:
            die(
                f"address {ip} is already used in cluster {cluster!r} by {rec.role} {rec.name!r}",
                hint=f"give this node another --ip; {gone}",
            )
