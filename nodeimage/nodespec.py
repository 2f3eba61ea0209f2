"""A cluster's nodes and parameters, validated before anything is written.

Pure functions: every value a seed or a local cluster takes from the user
(names, addresses, CIDRs, endpoints, NICs, key types) is checked here, and a
bad one is one error naming it and what would be right.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from nodeimage import stacks
from nodeimage.log import die
from nodeimage.secrets import ClusterParams, validate_cluster_name

ROLES = ("control-plane", "worker")
API_PORT = 6443
DEFAULT_PREFIX = 24
DEFAULT_IMAGE_REPOSITORY = "registry.k8s.io"

_HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_VERSION_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")
MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
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


# --- validation (pure: called before anything is written) --------------------------------------


def validate_hostname(name: str) -> None:
    if not _HOSTNAME_RE.match(name):
        die(
            f"invalid node name {name!r}",
            hint="a node name is a DNS label: 1-63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit (it becomes the hostname and the Kubernetes node name)",
        )


def validate_version(version: str) -> None:
    """A vMAJOR.MINOR.PATCH version that one of nodeimage's stacks renders kubeadm configuration for."""
    if not _VERSION_RE.match(version):
        die(f"invalid Kubernetes version {version!r}", hint="use the form vMAJOR.MINOR.PATCH, e.g. v1.17.17")
    stacks.for_version(version)


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
    if not (MAC_RE.match(value) or (_IFNAME_RE.match(value) and ":" not in value)):
        die(f"invalid {what} {value!r}", hint="give an interface name (e.g. ens4) or a MAC (e.g. 52:54:00:12:34:56)")


def cluster_params(
    name: str,
    *,
    kubernetes_version: str,
    pod_cidr: str,
    service_cidr: str,
    control_plane_ip: str,
    endpoint: str | None = None,
    image_repository: str = DEFAULT_IMAGE_REPOSITORY,
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
        image_repository=image_repository,
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
