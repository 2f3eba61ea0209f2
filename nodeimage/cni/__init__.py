"""Pod networks (CNI add-ons), one module each: the manifest a control plane applies at first boot.

A CNI unit knows its lock artifact (the release manifest), checks that a
downloaded manifest is the one it expects, rewrites its container images to
the registry the profile names, lists those images, and says how first boot
sets the cluster's pod CIDR in it. The manifest is validated and rewritten on
the build host and baked into the image as JSON; nodeimage-bootstrap applies
the pod-CIDR patch (data, see :class:`PodCidrPatch`) and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nodeimage.registry import Registry


@dataclass(frozen=True)
class PodCidrPatch:
    """Where first boot writes the pod CIDR, as data nodeimage-bootstrap interprets.

    ``container-env``: the env entry ``name`` of container ``container`` of the
    ``kind``/``object`` workload. ``configmap-json``: the field ``name`` of the
    JSON document under key ``container`` of the ConfigMap ``object``.
    """

    method: str
    kind: str
    object: str
    container: str
    name: str

    def as_dict(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in ("method", "kind", "object", "container", "name")}


@dataclass(frozen=True)
class Cni:
    name: str
    artifact: str  # lock artifact name of the release manifest
    description: str
    patch: PodCidrPatch
    # CNI reference plugins the add-on calls besides its own (from /opt/cni/bin).
    plugins: tuple[str, ...] = ("portmap", "loopback")

    def load(self, text: str, source: str) -> dict[str, Any]:
        """Parse and check the release manifest; die naming the file if it is not the expected one."""
        raise NotImplementedError

    def expected_images(self, version: str, repository: str | None) -> list[str]:
        """The images the release manifest of ``version`` runs, with ``repository`` (None: the release's)."""
        raise NotImplementedError

    def images(self, manifest: dict[str, Any]) -> list[str]:
        """Every container image the manifest runs, in order, without duplicates."""
        seen: dict[str, None] = {}
        for item in items(manifest):
            pod = item.get("spec", {}).get("template", {}).get("spec", {})
            for c in [*pod.get("initContainers", []), *pod.get("containers", [])]:
                seen[c["image"]] = None
        return list(seen)

    def set_images(self, manifest: dict[str, Any], repository: str | None, version: str) -> dict[str, Any]:
        """Point every image at ``repository`` (``None``: the release's registry), as ``expected_images(version,
        repository)`` lists them: what the image bakes is exactly what the manifest runs."""
        raise NotImplementedError


def items(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The objects of a manifest: a ``kind: List``'s items, a list of documents, or the one object."""
    if isinstance(manifest, list):
        return [i for d in manifest for i in items(d)]
    if manifest.get("kind") == "List":
        return list(manifest.get("items", []))
    return [manifest]


def pod_specs(manifest: Any) -> list[dict[str, Any]]:
    """The pod templates of the manifest's workloads (DaemonSets, Deployments)."""
    return [i["spec"]["template"]["spec"] for i in items(manifest) if "template" in i.get("spec", {})]


def containers(manifest: Any) -> list[dict[str, Any]]:
    """Every container of the manifest's pod templates, init containers first (the order kubelet runs them)."""
    return [c for pod in pod_specs(manifest) for c in [*pod.get("initContainers", []), *pod.get("containers", [])]]


def find(manifest: Any, kind: str, name: str) -> dict[str, Any] | None:
    for item in items(manifest):
        if item.get("kind") == kind and item.get("metadata", {}).get("name") == name:
            return item
    return None


_UNITS: Registry[Cni] = Registry("CNI", __name__, __path__)
register = _UNITS.register
names = _UNITS.names


def get(name: str) -> Cni:
    """The CNI ``name``; die listing the known ones."""
    return _UNITS.get(name)
