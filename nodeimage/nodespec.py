"""A cluster's nodes and parameters, validated before anything is written.

Every value a seed or a local cluster takes from the user (names, addresses,
CIDRs, endpoints, NICs, SSH keys, the files named by
``--ssh-key`` and ``--token-file``) is checked here, and a bad one is one
error naming it and what would be right (the files are read with
:func:`nodeimage.userpaths.read_user_file`).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from nodeimage import stacks
from nodeimage.log import die
from nodeimage.secrets import TOKEN_RE, ClusterParams, validate_cluster_name
from nodeimage.userpaths import read_user_file

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
    if node.ssh_public_key is not None:
        # The type only: the key data is checked where users give it (read_ssh_public_key, for --ssh-key).
        parse_ssh_public_key(node.ssh_public_key, "the SSH public key", check_data=False)
    return ip


def read_token_file(path: Path) -> str:
    """The bootstrap token in ``path`` (``--token-file``); the message for a bad one never shows it."""
    hint = (
        r"write one token of kubeadm's form [a-z0-9]{6}.[a-z0-9]{16} (e.g. from `kubeadm token create` on the "
        "control plane) to a file only you can read, or leave --token-file out for a random one"
    )
    token = read_user_file(path, what="bootstrap token file", option="--token-file", hint=hint, limit=4096).strip()
    if not TOKEN_RE.match(token):
        die(f"bootstrap token file {path} holds no valid token (value not shown: it is a secret)", hint=hint)
    return token


# OpenSSH public key types (the prefix of a .pub line) -> the type named inside the key blob.
# rsa-sha2-256/512 are signature algorithms of ssh-rsa keys: their blob says ssh-rsa.
SSH_KEY_TYPES = {
    "ssh-ed25519": "ssh-ed25519",
    "ecdsa-sha2-nistp256": "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384": "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521": "ecdsa-sha2-nistp521",
    "ssh-rsa": "ssh-rsa",
    "rsa-sha2-256": "ssh-rsa",
    "rsa-sha2-512": "ssh-rsa",
    "sk-ssh-ed25519@openssh.com": "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com": "sk-ecdsa-sha2-nistp256@openssh.com",
}
_ECDSA_POINT = {"nistp256": 65, "nistp384": 97, "nistp521": 133}  # uncompressed: 0x04 || X || Y
_RSA_MIN_BITS = 1024  # OpenSSH refuses shorter RSA keys
SSH_KEY_HINT = (
    "pass the public half of a key pair, one line `TYPE BASE64 [COMMENT]` as in ~/.ssh/id_ed25519.pub, "
    f"with TYPE one of {', '.join(SSH_KEY_TYPES)}"
)


def _ssh_fields(blob: bytes) -> list[bytes]:
    """The length-prefixed strings of an SSH wire-format key blob (RFC 4251 ``string``/``mpint``)."""
    fields, pos = [], 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            raise ValueError("the key data ends inside a length field")
        (length,) = struct.unpack(">I", blob[pos : pos + 4])
        pos += 4
        if pos + length > len(blob):
            raise ValueError("the key data is shorter than its fields say")
        fields.append(blob[pos : pos + length])
        pos += length
    return fields


_KEY_FIELDS = {  # fields after the type name: RFC 8709, RFC 5656, RFC 4253 and OpenSSH's PROTOCOL.u2f
    "ssh-ed25519": 1,  # public key
    "sk-ssh-ed25519@openssh.com": 2,  # public key, FIDO application
    "ecdsa-sha2-nistp256": 2,  # curve name, point
    "ecdsa-sha2-nistp384": 2,
    "ecdsa-sha2-nistp521": 2,
    "sk-ecdsa-sha2-nistp256@openssh.com": 3,  # curve name, point, FIDO application
    "ssh-rsa": 2,  # exponent, modulus
}


def _check_key_blob(kind: str, fields: list[bytes]) -> None:
    """The fields after the type name, per key type: counts, sizes, curve names."""
    want = _KEY_FIELDS[kind]
    sk = kind.startswith("sk-")
    if sk and (len(fields) == want - 1 or (len(fields) == want and not fields[-1])):
        raise ValueError("the FIDO application string is missing")
    if len(fields) != want:
        raise ValueError(f"it holds {len(fields)} fields after the type, a {kind} key has {want}")
    if "ed25519" in kind and len(fields[0]) != 32:
        raise ValueError("an Ed25519 key holds one 32-byte public key")
    if "ecdsa-sha2-" in kind:
        curve = kind.split("ecdsa-sha2-", 1)[1].split("@", 1)[0]
        if fields[0].decode(errors="replace") != curve:
            raise ValueError(f"an ECDSA key names its curve ({curve}) before its point")
        if len(fields[1]) != _ECDSA_POINT[curve] or fields[1][:1] != b"\x04":
            raise ValueError(f"the {curve} point is not {_ECDSA_POINT[curve]} bytes in uncompressed form")
    if kind == "ssh-rsa":
        bits = int.from_bytes(fields[1], "big").bit_length()
        if bits < _RSA_MIN_BITS:
            raise ValueError(f"the RSA modulus has {bits} bits; OpenSSH needs at least {_RSA_MIN_BITS}")


def parse_ssh_public_key(text: str, source: str, *, check_data: bool = True) -> str:
    """Check an OpenSSH public key line and return it stripped; ``source`` names it in the message.

    The base64 blob is decoded and its embedded type must be the one the line's prefix names, so a
    truncated, mangled or mislabelled key is caught here rather than by sshd on the node.
    ``check_data=False`` checks the form and the type name only.
    """
    if "PRIVATE KEY" in text:
        die(f"{source} is a private key; a seed needs the public one", hint="pass the .pub file beside it")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if len(lines) != 1:
        die(f"{source} holds {len(lines)} key lines; expected exactly one public key", hint=SSH_KEY_HINT)
    parts = lines[0].split(None, 2)
    kind = parts[0]
    if kind not in SSH_KEY_TYPES:
        shown = repr(kind) if re.fullmatch(r"[A-Za-z0-9@._-]{1,64}", kind) else "its first word"
        die(f"{source} is not an OpenSSH public key: unknown key type {shown}", hint=SSH_KEY_HINT)
    if len(parts) < 2:
        die(f"{source} is not an OpenSSH public key: no key data after {kind!r}", hint=SSH_KEY_HINT)
    if not check_data:
        return lines[0]
    try:
        blob = base64.b64decode(parts[1], validate=True)
        fields = _ssh_fields(blob)
        embedded = fields[0].decode("ascii") if fields else ""
        if embedded != SSH_KEY_TYPES[kind]:
            raise ValueError(f"the line says {kind!r} but the key data is of type {embedded[:64]!r}")
        _check_key_blob(embedded, fields[1:])
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        reason = str(exc) if not isinstance(exc, (binascii.Error, UnicodeDecodeError)) else "the key data is not base64"
        die(f"{source} is not a valid {kind} public key: {reason}", hint=SSH_KEY_HINT)
    return lines[0]


def read_ssh_public_key(path: Path) -> str:
    """The public key line in ``path`` (``--ssh-key``), checked."""
    hint = "pass the .pub file of a key pair, e.g. ~/.ssh/id_ed25519.pub (make one with `ssh-keygen -t ed25519`)"
    text = read_user_file(path, what="SSH public key file", option="--ssh-key", hint=hint, content_hint=SSH_KEY_HINT)
    return parse_ssh_public_key(text, f"SSH public key file {Path(path).expanduser()} (--ssh-key)")
