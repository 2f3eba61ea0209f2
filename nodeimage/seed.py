"""Per-node cloud-init seeds written to disk: the documents, the NoCloud ISO and the node's record.

:func:`seed_node` is the entry point (``invoke seed``, and ``invoke up`` per
node). The documents come from :mod:`nodeimage.seedrender`, the checks that
two seeds cannot collide from :mod:`nodeimage.noderecords`, the validators
from :mod:`nodeimage.nodespec`.

Everything is validated before anything is written, so a bad value leaves no
cluster directory and no seed behind. A worker takes the pod CIDR, the
service CIDR, the endpoint and the Kubernetes version from ``cluster.yaml``,
written when the control plane was seeded; asking a worker for another pod
CIDR or another version is an error, not ignored.

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
from dataclasses import asdict, replace
from pathlib import Path

import yaml

from nodeimage.fsutil import atomic_write
from nodeimage.log import NodeimageError, die, info
from nodeimage.nocloud import write_seed_iso
from nodeimage.noderecords import NODE_RECORD, NodeRecord, check_collisions, cluster_nodes
from nodeimage.nodespec import (
    DEFAULT_IMAGE_REPOSITORY,
    ROLES,
    NodeSpec,
    cluster_params,
    node_interface,
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
from nodeimage.seedrender import RenderedSeed, meta_data, render
from nodeimage.userpaths import os_errors

SEED_FILES = ("user-data", "meta-data", "network-config", "seed.iso")
# An ISO of a seed is ~400 KiB; when xorriso fails with less than this free, the filesystem was full.
_ISO_ROOM = 4 << 20


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
