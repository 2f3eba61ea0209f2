"""Per-node cloud-init seeds: user-data, meta-data, network-config and the NoCloud ISO.

Documents are built as Python data and dumped with ``yaml.safe_dump``: no
string templates, so no quoting bugs. The user-data writes the CA (control
plane only: the CA key never goes to a worker), the kubeadm configuration and
the bootstrap program's parameters, then ``runcmd`` runs one program,
``nodeimage-bootstrap ROLE``, that fails as a whole (a runcmd list of shell
commands would carry on after a failure).

Two kubeadm configurations are written per node, identical but for the
kubelet's ``node-labels``: the bootstrap program runs ``kata-runtime
kata-check`` first and then uses the one that labels the node Kata-capable
only when the check passed. This way nothing on the node has to edit YAML.

Everything is validated before anything is written, so a bad value leaves no
cluster directory and no seed behind.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from nodeimage.fsutil import atomic_write
from nodeimage.log import die, info
from nodeimage.nocloud import write_seed_iso
from nodeimage.secrets import (
    ClusterParams,
    ClusterSecrets,
    cluster_dir,
    cluster_exists,
    create_cluster,
    load_cluster,
    validate_cluster_name,
    validate_token,
)

ROLES = ("control-plane", "worker")
KUBEADM_API = "kubeadm.k8s.io/v1beta2"
KUBELET_API = "kubelet.config.k8s.io/v1beta1"
CRI_SOCKET = "/var/run/crio/crio.sock"
API_PORT = 6443
KATA_LABEL = "katacontainers.io/kata-runtime=true"
KUBEADM_CONFIG = "/run/kubeadm/kubeadm.yaml"
KUBEADM_CONFIG_KATA = "/run/kubeadm/kubeadm-kata.yaml"
BOOTSTRAP_PARAMS = "/etc/nodeimage/bootstrap.json"
BOOTSTRAP = "/usr/local/sbin/nodeimage-bootstrap"
ADMIN_USER = "nodeimage"
DEFAULT_PREFIX = 24
TOKEN_TTL = "24h0m0s"
# kubeadm.k8s.io/v1beta2 is the config API of kubeadm 1.15 to 1.21 (1.22 removed it).
V1BETA2_MINORS = range(15, 22)

_HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_VERSION_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")
_MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
_IFNAME_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")


@dataclass(frozen=True)
class NodeSpec:
    """One node of a cluster. ``nat_nic``/``private_nic`` are an interface name or a MAC address."""

    role: str
    name: str
    ip: str  # private address; "192.168.100.10" or "192.168.100.10/24"
    nat_nic: str = "ens3"
    private_nic: str = "ens4"
    ssh_public_key: str | None = None


@dataclass(frozen=True)
class RenderedSeed:
    user_data: str
    meta_data: dict
    network_config: dict


# --- validation (pure: called before anything is written) --------------------------------------


def validate_hostname(name: str) -> None:
    if not _HOSTNAME_RE.match(name):
        die(
            f"invalid node name {name!r}",
            hint="a node name is a DNS label: 1-63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit (it becomes the hostname and the Kubernetes node name)",
        )


def validate_version(version: str) -> None:
    m = _VERSION_RE.match(version)
    if not m:
        die(f"invalid Kubernetes version {version!r}", hint="use the form vMAJOR.MINOR.PATCH, e.g. v1.17.17")
    if int(m.group(1)) != 1 or int(m.group(2)) not in V1BETA2_MINORS:
        die(
            f"unsupported Kubernetes version {version!r} for the {KUBEADM_API} configuration",
            hint="use a version from v1.15.0 to v1.21.x (the profile k8s-1.17 pins v1.17.17)",
        )


def parse_cidr(value: str, what: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        die(f"invalid {what} {value!r}: {exc}", hint="use an IPv4 network in CIDR form, e.g. 10.244.0.0/16")
    if not isinstance(net, ipaddress.IPv4Network):
        die(f"invalid {what} {value!r}: only IPv4 is supported", hint="e.g. 10.244.0.0/16")
    return net


def parse_ip(value: str, what: str, default_prefix: int = DEFAULT_PREFIX) -> ipaddress.IPv4Interface:
    """``a.b.c.d`` (prefix ``default_prefix``) or ``a.b.c.d/len``; a usable IPv4 host address."""
    text = value if "/" in value else f"{value}/{default_prefix}"
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        die(f"invalid {what} {value!r}", hint="use an IPv4 address such as 192.168.100.10 or 192.168.100.10/24")
    if not isinstance(iface, ipaddress.IPv4Interface):
        die(f"invalid {what} {value!r}: only IPv4 is supported", hint="e.g. 192.168.100.10")
    net = iface.network
    if iface.ip in (net.network_address, net.broadcast_address) and net.prefixlen < 31:
        die(f"invalid {what} {value!r}: it is the network or broadcast address of {net}", hint="use a host address")
    if iface.ip.is_loopback or iface.ip.is_multicast or iface.ip.is_unspecified:
        die(f"invalid {what} {value!r}: not a unicast host address", hint="e.g. 192.168.100.10")
    return iface


def parse_endpoint(value: str) -> tuple[str, int]:
    """``HOST:PORT`` where HOST is an IPv4 address or a DNS name."""
    host, sep, port_text = value.rpartition(":")
    hint = "use HOST:PORT, e.g. 192.168.100.10:6443"
    if not sep or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        die(f"invalid API server endpoint {value!r}", hint=hint)
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        labels = host.split(".")
        if not all(_HOSTNAME_RE.match(label) for label in labels) or host.replace(".", "").isdigit():
            die(f"invalid API server endpoint {value!r}: {host!r} is neither an IPv4 address nor a DNS name", hint=hint)
    return host, int(port_text)


def validate_nic(value: str, what: str) -> None:
    if not (_MAC_RE.match(value) or (_IFNAME_RE.match(value) and ":" not in value)):
        die(f"invalid {what} {value!r}", hint="give an interface name (e.g. ens4) or a MAC (e.g. 52:54:00:12:34:56)")


def cluster_params(
    name: str,
    *,
    kubernetes_version: str,
    pod_cidr: str,
    service_cidr: str,
    control_plane_ip: str,
    endpoint: str | None = None,
) -> ClusterParams:
    """Validate a cluster's parameters as a whole and return them."""
    validate_cluster_name(name)
    validate_version(kubernetes_version)
    pods = parse_cidr(pod_cidr, "pod CIDR")
    services = parse_cidr(service_cidr, "service CIDR")
    cp = parse_ip(control_plane_ip, "control-plane IP")
    if pods.overlaps(services):
        die(
            f"pod CIDR {pods} overlaps service CIDR {services}",
            hint="use disjoint ranges, e.g. 10.244.0.0/16 and 10.96.0.0/12",
        )
    for net, what in ((pods, "pod CIDR"), (services, "service CIDR")):
        if net.overlaps(cp.network):
            die(
                f"{what} {net} overlaps the node network {cp.network}",
                hint="pick node addresses outside the pod and service ranges, e.g. 192.168.100.0/24",
            )
    endpoint = endpoint or f"{cp.ip}:{API_PORT}"
    parse_endpoint(endpoint)
    return ClusterParams(
        name=name,
        kubernetes_version=kubernetes_version,
        pod_cidr=str(pods),
        service_cidr=str(services),
        control_plane_ip=str(cp.ip),
        prefix_len=cp.network.prefixlen,
        endpoint=endpoint,
    )


def node_interface(node: NodeSpec, params: ClusterParams) -> ipaddress.IPv4Interface:
    """The node's private address with the cluster's prefix unless the node gave its own."""
    return parse_ip(node.ip, "node IP", default_prefix=params.prefix_len)


def validate_node(node: NodeSpec, params: ClusterParams) -> ipaddress.IPv4Interface:
    if node.role not in ROLES:
        die(f"invalid role {node.role!r}", hint=f"use one of: {', '.join(ROLES)}")
    validate_hostname(node.name)
    validate_nic(node.nat_nic, "NAT NIC")
    validate_nic(node.private_nic, "private NIC")
    if node.nat_nic == node.private_nic:
        die(f"the NAT NIC and the private NIC are both {node.nat_nic!r}", hint="name two different interfaces")
    ip = node_interface(node, params)
    cp_net = ipaddress.ip_interface(f"{params.control_plane_ip}/{params.prefix_len}").network
    if ip.network != cp_net:
        die(
            f"node IP {node.ip} is not in the cluster's node network {cp_net}",
            hint=f"give an address in {cp_net} (the control plane is {params.control_plane_ip})",
        )
    if node.role == "control-plane" and str(ip.ip) != params.control_plane_ip:
        die(f"control-plane IP {node.ip} differs from the cluster's {params.control_plane_ip}")
    if node.role == "worker" and str(ip.ip) == params.control_plane_ip:
        die(f"worker IP {node.ip} is the control plane's address", hint="give the worker its own address")
    if node.ssh_public_key is not None and not node.ssh_public_key.startswith(("ssh-", "ecdsa-")):
        die("the SSH public key does not look like one", hint="pass the .pub file, e.g. ~/.ssh/id_ed25519.pub")
    return ip


# --- rendering (pure) --------------------------------------------------------------------------


def kubeadm_documents(node: NodeSpec, params: ClusterParams, secrets: ClusterSecrets, *, kata: bool) -> list[dict]:
    """The kubeadm v1beta2 documents for ``node`` (only fields of that API)."""
    ip = str(node_interface(node, params).ip)
    kubelet_args = {"node-ip": ip}
    if kata:
        kubelet_args["node-labels"] = KATA_LABEL
    registration = {"name": node.name, "criSocket": CRI_SOCKET, "kubeletExtraArgs": kubelet_args}
    if node.role == "worker":
        return [
            {
                "apiVersion": KUBEADM_API,
                "kind": "JoinConfiguration",
                "nodeRegistration": registration,
                "discovery": {
                    "bootstrapToken": {
                        "token": secrets.token,
                        "apiServerEndpoint": params.endpoint,
                        "caCertHashes": [secrets.ca_hash],
                    },
                    "timeout": "10m0s",
                },
            }
        ]
    return [
        {
            "apiVersion": KUBEADM_API,
            "kind": "InitConfiguration",
            "bootstrapTokens": [
                {
                    "token": secrets.token,
                    "description": "nodeimage bootstrap token for the cluster's workers",
                    "ttl": TOKEN_TTL,
                    "usages": ["signing", "authentication"],
                    "groups": ["system:bootstrappers:kubeadm:default-node-token"],
                }
            ],
            "nodeRegistration": registration,
            "localAPIEndpoint": {"advertiseAddress": ip, "bindPort": API_PORT},
        },
        {
            "apiVersion": KUBEADM_API,
            "kind": "ClusterConfiguration",
            "clusterName": params.name,
            "kubernetesVersion": params.kubernetes_version,
            "controlPlaneEndpoint": params.endpoint,
            "networking": {"podSubnet": params.pod_cidr, "serviceSubnet": params.service_cidr},
            # 127.0.0.1: `invoke up` forwards a local port to the API server for kubectl on the host
            "apiServer": {"certSANs": ["127.0.0.1"]},
        },
        {"apiVersion": KUBELET_API, "kind": "KubeletConfiguration", "cgroupDriver": "systemd"},
    ]


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
        "kata_label": KATA_LABEL,
    }


def network_config(node: NodeSpec, params: ClusterParams) -> dict:
    """Network config v2: DHCP on the NAT NIC, the static private address on the second NIC."""
    ip = node_interface(node, params)

    def entry(nic: str, stable: str, settings: dict) -> tuple[str, dict]:
        if _MAC_RE.match(nic):
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
            {"path": "/etc/kubernetes/pki/ca.crt", "owner": "root:root", "permissions": "0644",
             "content": secrets.ca_cert_pem.decode()},
            {"path": "/etc/kubernetes/pki/ca.key", "owner": "root:root", "permissions": "0600",
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
        "runcmd": [[BOOTSTRAP, node.role]],
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
        )
        validate_node(node, params)
        secrets = create_cluster(directory, params, token=token)
    seed = render(node, params, secrets)
    iso = write_seed(out_dir or directory / "nodes" / node.name, seed)
    info(f"seed for {node.role} {node.name} of cluster {cluster}: {iso}")
    return iso
