"""A node's cloud-init seed documents, rendered from its cluster: user-data, meta-data and network-config.

Pure: nothing here writes a file (:mod:`nodeimage.seed` does). Documents are
built as Python data and dumped with ``yaml.safe_dump``: no string templates,
so no quoting bugs. The user-data writes the CA (control plane only: the CA
key never goes to a worker), the kubeadm configuration and the bootstrap
program's parameters, then ``runcmd`` starts one unit,
``nodeimage-bootstrap.service``, whose program fails as a whole (a runcmd
list of shell commands would carry on after a failure).

Two kubeadm configurations are written per node, identical but for the
kubelet's ``node-labels``: the bootstrap program runs ``kata-runtime
kata-check`` first and then uses the one that labels the node Kata-capable
only when the check passed. This way nothing on the node has to edit YAML.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import yaml

from nodeimage import stacks
from nodeimage.nodespec import MAC_RE, NodeSpec, node_interface, validate_node
from nodeimage.secrets import ClusterParams, ClusterSecrets

# Under /etc, not /run: a bootstrap retried after a reboot still finds them (0600: they hold the token).
KUBEADM_CONFIG = "/etc/nodeimage/kubeadm/kubeadm.yaml"
KUBEADM_CONFIG_KATA = "/etc/nodeimage/kubeadm/kubeadm-kata.yaml"
BOOTSTRAP_PARAMS = "/etc/nodeimage/bootstrap.json"
SEED_PKI = "/etc/nodeimage/pki"
BOOTSTRAP_UNIT = "nodeimage-bootstrap.service"
ADMIN_USER = "nodeimage"


@dataclass(frozen=True)
class RenderedSeed:
    """A node's three seed documents, ready to be written (the ISO is made from them)."""

    user_data: str
    meta_data: dict
    network_config: dict


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
