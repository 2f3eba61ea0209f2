"""Per-node cloud-init seeds: user-data, meta-data, network-config and the NoCloud ISO.

Documents are built as Python data and dumped with ``yaml.safe_dump``: no
string templates, so no quoting bugs. The user-data writes the CA (control
plane only: the CA key never goes to a worker), the kubeadm configuration and
the bootstrap program's parameters, then ``runcmd`` starts one unit,
``nodeimage-bootstrap.service``, whose program fails as a whole (a runcmd
list of shell commands would carry on after a failure).

Two kubeadm configurations are written per node, identical but for the
kubelet's ``node-labels``: the bootstrap program runs ``kata-runtime
kata-check`` first and then uses the one that labels the node Kata-capable
only when the check passed. This way nothing on the node has to edit YAML.

Everything is validated before anything is written, so a bad value leaves no
cluster directory and no seed behind.

Seeds cannot collide. Every node seeded for a cluster is recorded in
``<cluster>/nodes/<name>/node.json`` (name, role, address, where its seed
went), and a new seed is refused when its name or address is already another
node's, or when it would be a second control plane. Re-rendering the same
node (same name, role and address) replaces its seed. A worker takes the pod
CIDR, the service CIDR, the endpoint and the Kubernetes version from
``cluster.yaml``, written when the control plane was seeded; asking a worker
for another pod CIDR or another version is an error, not ignored.

A seed is written into a fresh 0700 directory beside its final place and
renamed there, so a failed seed leaves no partial node directory (nor, for
the first control-plane seed, a cluster). ``--out DIR`` never changes DIR:
the seed goes to a new directory ``DIR/<cluster>-<node>/``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml

from nodeimage import stacks
from nodeimage.fsutil import atomic_write
from nodeimage.log import NodeimageError, die, info
from nodeimage.nocloud import write_seed_iso
from nodeimage.nodespec import (
    DEFAULT_IMAGE_REPOSITORY,
    MAC_RE,
    ROLES,
    NodeSpec,
    cluster_params,
    node_interface,
    os_errors,
    parse_cidr,
    parse_endpoint,
    parse_ip,
    validate_node,
)
from nodeimage.secrets import (
    ClusterParams,
    ClusterSecrets,
    cluster_dir,
    cluster_exists,
    create_cluster,
    load_cluster,
    validate_token,
)

# Under /etc, not /run: a bootstrap retried after a reboot still finds them (0600: they hold the token).
KUBEADM_CONFIG = "/etc/nodeimage/kubeadm/kubeadm.yaml"
KUBEADM_CONFIG_KATA = "/etc/nodeimage/kubeadm/kubeadm-kata.yaml"
BOOTSTRAP_PARAMS = "/etc/nodeimage/bootstrap.json"
SEED_PKI = "/etc/nodeimage/pki"
BOOTSTRAP_UNIT = "nodeimage-bootstrap.service"
ADMIN_USER = "nodeimage"
NODE_RECORD = "node.json"
SEED_FILES = ("user-data", "meta-data", "network-config", "seed.iso")
# An ISO of a seed is ~400 KiB; when xorriso fails with less than this free, the filesystem was full.
_ISO_ROOM = 4 << 20


@dataclass(frozen=True)
class RenderedSeed:
    user_data: str
    meta_data: dict
    network_config: dict


# --- rendering (pure) --------------------------------------------------------------------------


def kubeadm_documents(node: NodeSpec, params: ClusterParams, secrets: ClusterSecrets, *, kata: bool) -> list[dict]:
    """The kubeadm documents for ``node``, in the API of the stack of the cluster's Kubernetes version."""
    stack = stacks.for_version(params.kubernetes_version)
    return stack.kubeadm_documents(node, params, secrets, kata=kata, image_repository=params.image_repository)


class _BlockDumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings (files in write_files) as readable ``|`` blocks."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def _dump(data: object) -> str:
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False, width=1000)


def dump_documents(docs: list[dict]) -> str:
    return "---\n".join(_dump(d) for d in docs)


def bootstrap_params(node: NodeSpec, params: ClusterParams) -> dict:
    """What nodeimage-bootstrap needs besides the kubeadm config (no secrets here)."""
    return {
        "role": node.role,
        "node_name": node.name,
        "node_ip": str(node_interface(node, params).ip),
        "cluster": params.name,
        "api_endpoint": params.endpoint,
        "pod_cidr": params.pod_cidr,
        "kubeadm_config": KUBEADM_CONFIG,
        "kubeadm_config_kata": KUBEADM_CONFIG_KATA,
        "kata_label": stacks.KATA_LABEL,
        "cri_socket": stacks.CRI_SOCKET,
    }


def network_config(node: NodeSpec, params: ClusterParams) -> dict:
    """Network config v2: DHCP on the NAT NIC, the static private address on the second NIC."""
    ip = node_interface(node, params)

    def entry(nic: str, stable: str, settings: dict) -> tuple[str, dict]:
        if MAC_RE.match(nic):
            return stable, {"match": {"macaddress": nic}, "set-name": stable, **settings}
        return nic, settings

    nat_key, nat = entry(node.nat_nic, "nat0", {"dhcp4": True})
    priv_key, priv = entry(node.private_nic, "cluster0", {"dhcp4": False, "addresses": [str(ip)]})
    return {"version": 2, "ethernets": {nat_key: nat, priv_key: priv}}


def user_data(node: NodeSpec, params: ClusterParams, secrets: ClusterSecrets) -> str:
    """The ``#cloud-config`` document for ``node`` (cloud-init 20.1 features only: no write_files defer)."""
    files: list[dict] = []
    if node.role == "control-plane":
        files += [
            # nodeimage-bootstrap copies them into /etc/kubernetes/pki before each `kubeadm init`
            {"path": f"{SEED_PKI}/ca.crt", "owner": "root:root", "permissions": "0644",
             "content": secrets.ca_cert_pem.decode()},
            {"path": f"{SEED_PKI}/ca.key", "owner": "root:root", "permissions": "0600",
             "content": secrets.ca_key_pem.decode()},
        ]  # fmt: skip
    for path, kata in ((KUBEADM_CONFIG, False), (KUBEADM_CONFIG_KATA, True)):
        files.append(
            {
                "path": path,
                "owner": "root:root",
                "permissions": "0600",
                "content": dump_documents(kubeadm_documents(node, params, secrets, kata=kata)),
            }
        )
    files.append(
        {
            "path": BOOTSTRAP_PARAMS,
            "owner": "root:root",
            "permissions": "0644",
            "content": json.dumps(bootstrap_params(node, params), indent=2, sort_keys=True) + "\n",
        }
    )
    doc: dict = {
        "hostname": node.name,
        "manage_etc_hosts": True,
        "write_files": files,
        # The unit runs the bootstrap (and again at later boots until it succeeded); runcmd waits for it,
        # so cloud-init reports a failed bootstrap as its own failure.
        "runcmd": [["systemctl", "start", BOOTSTRAP_UNIT]],
    }
    if node.ssh_public_key:
        doc["users"] = [
            {
                "name": ADMIN_USER,
                "gecos": "nodeimage admin",
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "lock_passwd": True,
                "ssh_authorized_keys": [node.ssh_public_key.strip()],
            }
        ]
    return "#cloud-config\n" + _dump(doc)


def meta_data(node: NodeSpec, params: ClusterParams) -> dict:
    return {"instance-id": f"nodeimage-{params.name}-{node.name}", "local-hostname": node.name}


def render(node: NodeSpec, params: ClusterParams, secrets: ClusterSecrets) -> RenderedSeed:
    validate_node(node, params)
    return RenderedSeed(user_data(node, params, secrets), meta_data(node, params), network_config(node, params))


# --- the cluster's nodes ----------------------------------------------------------------------


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


# --- writing ----------------------------------------------------------------------------------


def _is_seed_dir(path: Path, instance_id: str | None) -> bool:
    """Whether ``path`` is a seed nodeimage wrote (for ``instance_id``'s node, when given): safe to replace."""
    if path.is_symlink() or not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    if not names <= {*SEED_FILES, NODE_RECORD}:
        return False
    if instance_id is None:
        return True
    try:
        return yaml.safe_load((path / "meta-data").read_text()).get("instance-id") == instance_id
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return False


def _make_dir(path: Path) -> None:
    """Create ``path`` (0700) if it is missing; an existing directory's mode is never changed."""
    if not path.is_dir():
        path.mkdir(parents=True, mode=0o700)


def _place(stage: Path, final: Path) -> None:
    """Rename the complete ``stage`` to ``final``, replacing a previous seed there."""
    if not final.exists():
        os.rename(stage, final)
        return
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    os.rename(final, old)
    try:
        os.rename(stage, final)
    except BaseException:
        os.rename(old, final)
        raise
    shutil.rmtree(old)


def write_seed(out_dir: Path, seed: RenderedSeed, *, extra: dict[str, str] | None = None) -> Path:
    """Write the three documents, ``seed.iso`` (all 0600) and ``extra`` files to a new 0700 ``out_dir``.

    Everything is written into a temporary directory beside ``out_dir`` and renamed into place, so
    ``out_dir`` is complete or untouched; a previous seed there is replaced. Returns the ISO's path.
    """
    _make_dir(out_dir.parent)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))  # 0700
    try:
        atomic_write(stage / "user-data", seed.user_data, mode=0o600)
        atomic_write(stage / "meta-data", yaml.safe_dump(seed.meta_data, sort_keys=True), mode=0o600)
        atomic_write(stage / "network-config", yaml.safe_dump(seed.network_config, sort_keys=False), mode=0o600)
        for name, text in (extra or {}).items():
            atomic_write(stage / name, text, mode=0o600)
        try:
            write_seed_iso(
                stage / "seed.iso",
                user_data=seed.user_data,
                meta_data=seed.meta_data,
                network_config=seed.network_config,
            )
        except NodeimageError:
            if shutil.disk_usage(stage).free < _ISO_ROOM:  # xorriso says only "exit code 5"
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out_dir)) from None
            raise
        _place(stage, out_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out_dir / "seed.iso"


@contextlib.contextmanager
def _cluster_lock(state_root: Path) -> Iterator[None]:
    """One seed (or `up`) at a time per state directory, so two cannot both take a name or an address."""
    _make_dir(state_root)
    fd = os.open(state_root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _worker_params(
    cluster: str,
    directory: Path,
    *,
    kubernetes_version: str,
    pod_cidr: str,
    pod_cidr_given: bool,
    control_plane_ip: str | None,
    endpoint: str | None,
    token: str | None,
    profile: str | None,
) -> tuple[ClusterParams, ClusterSecrets]:
    """The cluster a worker joins, refusing what a worker cannot honour (it takes its cluster's values)."""
    if not cluster_exists(directory):
        die(
            f"cluster {cluster!r} does not exist yet (no {directory / 'cluster.yaml'})",
            hint="render the control-plane seed first: `invoke seed --cluster "
            f"{cluster} --role control-plane --name ... --ip ...`",
        )
    params, secrets = load_cluster(directory)
    if token is not None:
        # A token made later on the control plane (`kubeadm token create`) once the first one expired.
        secrets = replace(secrets, token=token)
    if control_plane_ip is not None and str(parse_ip(control_plane_ip, "control-plane IP").ip) != (
        params.control_plane_ip
    ):
        die(
            f"--control-plane-ip {control_plane_ip} differs from cluster {cluster!r}'s {params.control_plane_ip}",
            hint="leave it out: a worker takes the control plane's address from the cluster",
        )
    if endpoint is not None and endpoint != params.endpoint:
        parse_endpoint(endpoint)
        die(f"--endpoint {endpoint} differs from cluster {cluster!r}'s {params.endpoint}", hint="leave it out")
    if kubernetes_version != params.kubernetes_version:
        source = f"profile {profile!r}" if profile else "the profile"
        die(
            f"{source} is Kubernetes {kubernetes_version}, but the control plane of cluster {cluster!r} was seeded "
            f"with {params.kubernetes_version} (recorded in {directory / 'cluster.yaml'}); a worker cannot join at "
            "another version",
            hint=f"seed the worker with a profile of Kubernetes {params.kubernetes_version} (e.g. the control "
            "plane's) and boot it from that profile's image",
        )
    if pod_cidr_given and parse_cidr(pod_cidr, "pod CIDR") != ipaddress.ip_network(params.pod_cidr):
        die(
            f"--pod-cidr {pod_cidr} cannot apply to a worker: the pod CIDR of cluster {cluster!r} is "
            f"{params.pod_cidr}, set when its control plane was seeded",
            hint="leave --pod-cidr out for workers; the pod CIDR is chosen once, on the control-plane seed",
        )
    return params, secrets


def seed_node(
    *,
    cluster: str,
    node: NodeSpec,
    kubernetes_version: str,
    pod_cidr: str,
    service_cidr: str,
    control_plane_ip: str | None = None,
    endpoint: str | None = None,
    state_dir: Path | None = None,
    out_dir: Path | None = None,
    token: str | None = None,
    image_repository: str = DEFAULT_IMAGE_REPOSITORY,
    pod_cidr_given: bool = False,
    profile: str | None = None,
) -> Path:
    """Create the cluster if needed (control plane only) and write ``node``'s seed; return the ISO path.

    All input is checked before anything is written. ``pod_cidr_given``: the user asked for ``pod_cidr``
    (rather than taking the profile's), which a worker cannot honour unless it is the cluster's.
    The seed goes to ``<cluster>/nodes/<name>/``, or with ``out_dir`` to a new ``out_dir/<cluster>-<name>/``.
    """
    directory = cluster_dir(cluster, state_dir)
    if token is not None:
        validate_token(token)
    if node.role not in ROLES:
        die(f"invalid role {node.role!r}", hint=f"use one of: {', '.join(ROLES)}")
    secrets: ClusterSecrets | None = None  # a control plane's are made (or reused) once nothing can fail
    if node.role == "worker":
        params, secrets = _worker_params(
            cluster,
            directory,
            kubernetes_version=kubernetes_version,
            pod_cidr=pod_cidr,
            pod_cidr_given=pod_cidr_given,
            control_plane_ip=control_plane_ip,
            endpoint=endpoint,
            token=token,
            profile=profile,
        )
    else:
        if control_plane_ip is not None and parse_ip(control_plane_ip, "control-plane IP").ip != (
            parse_ip(node.ip, "node IP").ip
        ):
            die(f"a control plane's --ip {node.ip} and --control-plane-ip {control_plane_ip} differ", hint="give one")
        params = cluster_params(
            cluster,
            kubernetes_version=kubernetes_version,
            pod_cidr=pod_cidr,
            service_cidr=service_cidr,
            control_plane_ip=control_plane_ip or node.ip,
            endpoint=endpoint,
            image_repository=image_repository,
        )
    validate_node(node, params)
    ip = str(node_interface(node, params).ip)
    out = Path(out_dir).expanduser().absolute() if out_dir is not None else None
    seed_dir = _seed_dir(directory, node, params, out)

    state_errors = os_errors(action="write cluster files in", path=directory, option="--state-dir")
    root_existed = directory.parent.is_dir()
    try:
        with state_errors, _cluster_lock(directory.parent):
            check_collisions(node, ip, cluster, directory, cluster_nodes(directory))
            fresh = not cluster_exists(directory)
            try:
                iso = _write_node(node, params, secrets, directory, seed_dir, out, token=token, ip=ip, profile=profile)
            except BaseException:
                if fresh and cluster_exists(directory):
                    shutil.rmtree(directory)  # made by this call: a failed first seed leaves no cluster
                raise
    except BaseException:
        if not root_existed:
            with contextlib.suppress(OSError):
                directory.parent.rmdir()  # only when empty: the state directory this call made
        raise
    info(f"seed for {node.role} {node.name} of cluster {cluster}: {iso}")
    return iso


def _seed_dir(directory: Path, node: NodeSpec, params: ClusterParams, out: Path | None) -> Path:
    """Where ``node``'s seed goes; refuse a place holding anything but a previous seed of this very node."""
    if out is not None and out.exists() and not out.is_dir():
        die(f"--out {out} is not a directory", hint=f"give a directory: the seed goes to a new {params.name}-<node>/")
    seed_dir = out / f"{params.name}-{node.name}" if out is not None else directory / "nodes" / node.name
    instance_id = meta_data(node, params)["instance-id"] if out is not None else None
    if seed_dir.exists() and not _is_seed_dir(seed_dir, instance_id):
        die(
            f"{seed_dir} exists and is not the seed of node {node.name!r} of cluster {params.name!r}; "
            "nodeimage writes seeds only into directories it makes",
            hint="remove it, or give another --out",
        )
    return seed_dir


def _write_node(
    node: NodeSpec,
    params: ClusterParams,
    secrets: ClusterSecrets | None,
    directory: Path,
    seed_dir: Path,
    out: Path | None,
    *,
    token: str | None,
    ip: str,
    profile: str | None,
) -> Path:
    """Create the cluster (control plane), write the seed and the node record; return the ISO's path."""
    if secrets is None:  # a control plane: the cluster is made (or its secrets reused) here
        secrets = create_cluster(directory, params, token=token)
    seed = render(node, params, secrets)
    record = json.dumps(asdict(NodeRecord(node.name, node.role, ip, str(seed_dir), profile)), indent=2) + "\n"
    if out is None:
        _make_dir(directory / "nodes")
        return write_seed(seed_dir, seed, extra={NODE_RECORD: record})
    with os_errors(action="write the seed to", path=seed_dir, option="--out"):
        iso = write_seed(seed_dir, seed)
    _make_dir(directory / "nodes" / node.name)
    atomic_write(directory / "nodes" / node.name / NODE_RECORD, record, mode=0o600)
    return iso
