"""The kubeadm documents Cluster API v1.14's KubeadmConfig produces for a node, here for a CRI-O node.

Cluster API converts its KubeadmConfig types to kubeadm's API for the Machine's Kubernetes version
(v1beta4 from 1.31 on: kubernetes-sigs/cluster-api@v1.14.0 bootstrap/kubeadm/pkg/types/utils.go:57-71) and
encodes them with apimachinery's YAML serializer: JSON field names of
bootstrap/kubeadm/pkg/types/upstreamv1beta4/types.go, keys sorted, ``omitempty`` honoured as Go's JSON does
(a struct is never empty: ``localAPIEndpoint: {}``, ``discovery: {}``; ``taints`` has no omitempty, so an
unset list is ``taints: null``). The expected strings of utils_test.go:170-192, 241-263 and 311-333 are
reproduced exactly by tests/unit/test_capi_render.py.

What is filled in the way the controller fills it: the ClusterConfiguration's clusterName, networking and
kubernetesVersion from the Cluster and the Machine (kubeadmconfig_controller.go:1366-1403), a worker's
``node.cluster.x-k8s.io/uninitialized:NoSchedule`` taint (704-711), token discovery without CA hashes falling
back to ``unsafeSkipCAVerification`` (1275-1331), timeouts in seconds written as Go durations
(upstreamv1beta4/conversion.go:481-493). Only the fields below are modelled; scalars that need quotes are
quoted PyYAML's way (``'…'``) where sigs.k8s.io/yaml writes ``"…"``, which parses to the same document.

The CRI-O specifics: ``nodeRegistration.criSocket: unix:///var/run/crio/crio.sock`` (CRI-O's default
``listen``, see /work/audit/crio.md), and the kubelet's cgroup driver set to systemd with a kubeadm
``kubeletconfiguration`` patch written through ``files`` and named by ``patches.directory``: the way
Cluster API documents for kubelet settings (docs/book/src/tasks/bootstrap/kubeadm-bootstrap/kubelet-config.md
:260-300), since KubeadmConfig has no KubeletConfiguration field. kubeadm already defaults the driver to
systemd; the patch states it rather than relying on that default.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.capi.render import File

API_VERSION = "kubeadm.k8s.io/v1beta4"
CRIO_SOCKET = "unix:///var/run/crio/crio.sock"
# api/core/v1beta2/common_types.go:298-301
UNINITIALIZED_TAINT = {"effect": "NoSchedule", "key": "node.cluster.x-k8s.io/uninitialized"}
PATCHES_DIRECTORY = "/etc/kubernetes/patches"
# kubeadm's patch file name: target[suffix][+patchtype].extension (kubelet-config.md:280-282)
KUBELET_PATCH_PATH = f"{PATCHES_DIRECTORY}/kubeletconfiguration0+strategic.json"
# upstreamv1beta4/types.go:553-593, Cluster API's *Seconds fields (api/bootstrap/kubeadm/v1beta2 Timeouts)
TIMEOUTS = ("controlPlaneComponentHealthCheck", "kubeletHealthCheck", "kubernetesAPICall", "etcdAPICall",
            "tlsBootstrap", "discovery")  # fmt: skip


def api_version_for(kubernetes_version: str) -> str:
    """kubeadm's API for a Machine's version, as KubeVersionToKubeadmAPIGroupVersion decides (utils.go:57-71);
    only v1beta4 is produced here."""
    parts = kubernetes_version.lstrip("v").split("-")[0].split(".")
    major, minor = int(parts[0]), int(parts[1])
    if (major, minor) < (1, 22):
        raise ValueError("the bootstrap provider for kubeadm doesn't support Kubernetes version lower than v1.22.0")
    if (major, minor) < (1, 31):
        raise ValueError(f"{kubernetes_version} gets kubeadm.k8s.io/v1beta3, which this renderer does not produce")
    return API_VERSION


def go_duration(seconds: int) -> str:
    """time.Duration(seconds * time.Second).String(): 50s, 1m30s, 1h0m0s."""
    if seconds == 0:
        return "0s"
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def to_yaml(doc: Mapping[str, Any]) -> str:
    """Sorted keys, block style, lists flush with their key, no line folding: the serializer's layout."""
    return yaml.safe_dump(dict(doc), sort_keys=True, default_flow_style=False, width=1 << 30)


@dataclass(frozen=True)
class NodeRegistration:
    """NodeRegistrationOptions (upstreamv1beta4/types.go:239-279); ``taints`` None is unset (``taints: null``)."""

    name: str = ""
    cri_socket: str = CRIO_SOCKET
    taints: tuple[Mapping[str, str], ...] | None = None
    kubelet_extra_args: tuple[tuple[str, str], ...] = ()
    ignore_preflight_errors: tuple[str, ...] = ()
    image_pull_policy: str = ""

    def doc(self) -> dict[str, Any]:
        out: dict[str, Any] = {"taints": None if self.taints is None else [dict(t) for t in self.taints]}
        if self.name:
            out["name"] = self.name
        if self.cri_socket:
            out["criSocket"] = self.cri_socket
        if self.kubelet_extra_args:
            out["kubeletExtraArgs"] = [{"name": n, "value": v} for n, v in self.kubelet_extra_args]
        if self.ignore_preflight_errors:
            out["ignorePreflightErrors"] = list(self.ignore_preflight_errors)
        if self.image_pull_policy:
            out["imagePullPolicy"] = self.image_pull_policy
        return out


def _timeouts(timeouts: Mapping[str, int]) -> dict[str, str] | None:
    bad = set(timeouts) - set(TIMEOUTS)
    if bad:
        raise ValueError(f"unknown kubeadm v1beta4 timeouts: {sorted(bad)}")
    return {k: go_duration(v) for k, v in timeouts.items()} or None


def cluster_configuration(
    *,
    kubernetes_version: str,
    cluster_name: str,
    control_plane_endpoint: str = "",
    pod_subnet: str | None = None,
    service_subnet: str | None = None,
    dns_domain: str | None = None,
    image_repository: str = "",
    cert_sans: Sequence[str] = (),
    api_server_extra_args: Sequence[tuple[str, str]] = (),
) -> str:
    """The ClusterConfiguration of /run/kubeadm/kubeadm.yaml (types.go:82-163), Cluster data set as
    SetAdditionalData sets it (upstreamv1beta4/conversion.go:547-572)."""
    api_server: dict[str, Any] = {}
    if api_server_extra_args:
        api_server["extraArgs"] = [{"name": n, "value": v} for n, v in api_server_extra_args]
    if cert_sans:
        api_server["certSANs"] = list(cert_sans)
    networking = {
        k: v for k, v in (("podSubnet", pod_subnet), ("serviceSubnet", service_subnet), ("dnsDomain", dns_domain)) if v
    }
    doc: dict[str, Any] = {
        "apiVersion": api_version_for(kubernetes_version),
        "kind": "ClusterConfiguration",
        "apiServer": api_server,
        "controllerManager": {},
        "dns": {},
        "etcd": {},
        "networking": networking,
        "proxy": {},
        "scheduler": {},
        "kubernetesVersion": kubernetes_version,
        "clusterName": cluster_name,
    }
    if control_plane_endpoint:
        doc["controlPlaneEndpoint"] = control_plane_endpoint
    if image_repository:
        doc["imageRepository"] = image_repository
    return to_yaml(doc)


def init_configuration(
    registration: NodeRegistration,
    *,
    kubernetes_version: str,
    advertise_address: str = "",
    bind_port: int = 0,
    timeouts: Mapping[str, int] | None = None,
    patches_directory: str = "",
    skip_phases: Sequence[str] = (),
) -> str:
    """The InitConfiguration of /run/kubeadm/kubeadm.yaml (types.go:28-77)."""
    endpoint: dict[str, Any] = {}
    if advertise_address:
        endpoint["advertiseAddress"] = advertise_address
    if bind_port:
        endpoint["bindPort"] = bind_port
    doc: dict[str, Any] = {
        "apiVersion": api_version_for(kubernetes_version),
        "kind": "InitConfiguration",
        "localAPIEndpoint": endpoint,
        "nodeRegistration": registration.doc(),
    }
    if skip_phases:
        doc["skipPhases"] = list(skip_phases)
    if patches_directory:
        doc["patches"] = {"directory": patches_directory}
    if t := _timeouts(timeouts or {}):
        doc["timeouts"] = t
    return to_yaml(doc)


@dataclass(frozen=True)
class TokenDiscovery:
    """Discovery.BootstrapToken (types.go:462-486) as reconcileDiscovery leaves it."""

    token: str
    api_server_endpoint: str
    ca_cert_hashes: tuple[str, ...] = field(default_factory=tuple)

    def doc(self) -> dict[str, Any]:
        out: dict[str, Any] = {"token": self.token, "apiServerEndpoint": self.api_server_endpoint}
        if self.ca_cert_hashes:
            out["caCertHashes"] = list(self.ca_cert_hashes)
        else:
            # kubeadmconfig_controller.go:1325-1328: no CA hashes, so CA verification is skipped
            out["unsafeSkipCAVerification"] = True
        return out


def join_configuration(
    registration: NodeRegistration,
    discovery: TokenDiscovery,
    *,
    kubernetes_version: str,
    control_plane: bool = False,
    advertise_address: str = "",
    bind_port: int = 0,
    timeouts: Mapping[str, int] | None = None,
    patches_directory: str = "",
) -> str:
    """A JoinConfiguration (types.go:388-440). A worker (``control_plane`` False) gets the uninitialized taint
    added unless present, as joinWorker adds it (kubeadmconfig_controller.go:704-711); a control-plane join
    gets ``controlPlane`` and no taint change."""
    reg = registration
    if not control_plane:
        taints = tuple(reg.taints or ())
        if not any(t.get("key") == UNINITIALIZED_TAINT["key"] and t.get("effect") == "NoSchedule" for t in taints):
            reg = NodeRegistration(reg.name, reg.cri_socket, (*taints, UNINITIALIZED_TAINT), reg.kubelet_extra_args,
                                   reg.ignore_preflight_errors, reg.image_pull_policy)  # fmt: skip
    doc: dict[str, Any] = {
        "apiVersion": api_version_for(kubernetes_version),
        "kind": "JoinConfiguration",
        "discovery": {"bootstrapToken": discovery.doc()},
        "nodeRegistration": reg.doc(),
    }
    if control_plane:
        endpoint: dict[str, Any] = {}
        if advertise_address:
            endpoint["advertiseAddress"] = advertise_address
        if bind_port:
            endpoint["bindPort"] = bind_port
        doc["controlPlane"] = {"localAPIEndpoint": endpoint}
    if patches_directory:
        doc["patches"] = {"directory": patches_directory}
    if t := _timeouts(timeouts or {}):
        doc["timeouts"] = t
    return to_yaml(doc)


def kubelet_patch_file(cgroup_driver: str = "systemd") -> File:
    """The ``files`` entry that sets the kubelet's cgroup driver through kubeadm's kubeletconfiguration patch
    target (kubelet-config.md:260-300; the target is listed in upstreamv1beta4/types.go:513-523)."""
    patch = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": cgroup_driver,
    }
    return File(KUBELET_PATCH_PATH, json.dumps(patch, indent=2) + "\n", owner="root:root", permissions="0644")


def ca_cert_hash(ca_pem: str) -> str:
    """``sha256:<hex>`` of the CA certificate's SubjectPublicKeyInfo (util/secret/certificates.go:352-369)."""
    cert = x509.load_pem_x509_certificate(ca_pem.encode())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


@dataclass(frozen=True)
class CrioNode:
    """What a profile's CRI-O node needs in its KubeadmConfig: the socket, the cgroup-driver patch, extra args."""

    name: str = ""
    kubelet_extra_args: tuple[tuple[str, str], ...] = ()

    def registration(self) -> NodeRegistration:
        return NodeRegistration(name=self.name, cri_socket=CRIO_SOCKET, kubelet_extra_args=self.kubelet_extra_args)

    def files(self) -> list[File]:
        return [kubelet_patch_file("systemd")]
