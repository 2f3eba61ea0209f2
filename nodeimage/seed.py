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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from nodeimage import stacks
from nodeimage.fsutil import atomic_write
from nodeimage.log import die, info
from nodeimage.nocloud import write_seed_iso
from nodeimage.nodespec import (
    DEFAULT_IMAGE_REPOSITORY,
    MAC_RE,
    ROLES,
    NodeSpec,
    cluster_params,
    node_interface,
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


# --- writing ----------------------------------------------------------------------------------


def write_seed(out_dir: Path, seed: RenderedSeed) -> Path:
    """Write the three documents (0600) and ``seed.iso`` (0600) to ``out_dir``; return the ISO's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out_dir.chmod(0o700)
    atomic_write(out_dir / "user-data", seed.user_data, mode=0o600)
    atomic_write(out_dir / "meta-data", yaml.safe_dump(seed.meta_data, sort_keys=True), mode=0o600)
    atomic_write(out_dir / "network-config", yaml.safe_dump(seed.network_config, sort_keys=False), mode=0o600)
    iso = out_dir / "seed.iso"
    write_seed_iso(iso, user_data=seed.user_data, meta_data=seed.meta_data, network_config=seed.network_config)
    return iso


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
) -> Path:
    """Create the cluster if needed (control plane only) and write ``node``'s seed; return the ISO path.

    All input is checked before anything is written.
    """
    directory = cluster_dir(cluster, state_dir)
    if token is not None:
        validate_token(token)
    if node.role not in ROLES:
        die(f"invalid role {node.role!r}", hint=f"use one of: {', '.join(ROLES)}")
    if node.role == "worker":
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
        validate_node(node, params)
    else:
        cp_ip = control_plane_ip or node.ip
        if control_plane_ip is not None and parse_ip(control_plane_ip, "control-plane IP").ip != (
            parse_ip(node.ip, "node IP").ip
        ):
            die(f"a control plane's --ip {node.ip} and --control-plane-ip {control_plane_ip} differ", hint="give one")
        params = cluster_params(
            cluster,
            kubernetes_version=kubernetes_version,
            pod_cidr=pod_cidr,
            service_cidr=service_cidr,
            control_plane_ip=cp_ip,
            endpoint=endpoint,
            image_repository=image_repository,
        )
        validate_node(node, params)
        secrets = create_cluster(directory, params, token=token)
    seed = render(node, params, secrets)
    iso = write_seed(out_dir or directory / "nodes" / node.name, seed)
    info(f"seed for {node.role} {node.name} of cluster {cluster}: {iso}")
    return iso
