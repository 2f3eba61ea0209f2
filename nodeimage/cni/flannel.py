"""Flannel: the current stack's pod network (one release manifest, VXLAN between nodes).

The release asset ``kube-flannel.yml`` is ``kubectl kustomize`` output of
Documentation/kustomization/kube-flannel/ (flannel-io/flannel v0.28.9,
Makefile release-manifest; .github/workflows/release.yml uploads it): a
stream of YAML documents, Namespace ``kube-flannel``, ClusterRole,
ClusterRoleBinding, ServiceAccount, ConfigMap ``kube-flannel-cfg`` and
DaemonSet ``kube-flannel-ds`` (init containers ``install-cni-plugin``, which
copies the flannel CNI plugin into /opt/cni/bin, and ``install-cni``, which
writes /etc/cni/net.d/10-flannel.conflist; container ``kube-flannel``). The
pod network is the ``Network`` field of the JSON under ``net-conf.json`` in
that ConfigMap; flanneld with ``--kube-subnet-mgr`` takes each node's
``spec.podCIDR``, so it must match kubeadm's ``podSubnet``.

The flannel plugin delegates to the CNI reference plugins (bridge, host-local)
and its conflist chains ``portmap``; flanneld exits when br_netfilter's sysctls
are missing (flannel v0.28.9 main.go), which the stacks' modules-load.d covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from nodeimage.cni import Cni, PodCidrPatch, containers, find, register
from nodeimage.log import die

NAMESPACE = "kube-flannel"
DAEMONSET = "kube-flannel-ds"
CONFIGMAP = "kube-flannel-cfg"
NET_CONF = "net-conf.json"
RELEASE_REPOSITORY = "ghcr.io/flannel-io"
# The CNI plugin image each flannel release's manifest names (flannel-io/flannel v0.28.9,
# Documentation/kube-flannel.yml and chart/kube-flannel/values.yaml): not derivable from flannel's version.
CNI_PLUGIN_IMAGE = {"v0.28.9": "v1.9.1-flannel3"}


@dataclass(frozen=True)
class Flannel(Cni):
    def load(self, text: str, source: str) -> dict[str, Any]:
        """The documents as one ``kind: List`` (what kubectl applies in order, and what the image bakes as JSON)."""
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as exc:
            die(f"{source}: the Flannel manifest is not YAML: {exc}")
        if len(docs) == 1 and isinstance(docs[0], dict) and docs[0].get("kind") == "List":
            manifest = docs[0]
        else:
            manifest = {"apiVersion": "v1", "kind": "List", "items": docs}
        ds = find(manifest, "DaemonSet", DAEMONSET) if all(isinstance(d, dict) for d in docs) else None
        cm = find(manifest, "ConfigMap", CONFIGMAP) if ds else None
        net = None
        try:
            net = yaml.safe_load(cm["data"][NET_CONF]) if cm else None
        except (KeyError, TypeError, yaml.YAMLError):
            net = None
        names = [c.get("name") for c in ds["spec"]["template"]["spec"]["containers"]] if ds else []
        if not ds or "kube-flannel" not in names or not isinstance(net, dict) or "Network" not in net:
            die(
                f"{source} is not the Flannel release manifest",
                hint=f"expected DaemonSet {DAEMONSET} running container kube-flannel and ConfigMap {CONFIGMAP} whose "
                f"{NET_CONF} has a Network",
            )
        if not find(manifest, "Namespace", NAMESPACE):
            die(f"{source}: the Flannel manifest has no Namespace {NAMESPACE}", hint="is it the release asset?")
        return manifest

    def expected_images(self, version: str, repository: str | None) -> list[str]:
        """In the order the DaemonSet runs them: the CNI plugin (init), then flannel (init and main)."""
        repo = (repository or RELEASE_REPOSITORY).rstrip("/")
        if version not in CNI_PLUGIN_IMAGE:
            die(
                f"flannel {version}: nodeimage does not know which flannel-cni-plugin image its manifest runs",
                hint=f"known releases: {', '.join(CNI_PLUGIN_IMAGE)} (nodeimage/cni/flannel.py CNI_PLUGIN_IMAGE)",
            )
        return [f"{repo}/flannel-cni-plugin:{CNI_PLUGIN_IMAGE[version]}", f"{repo}/flannel:{version}"]

    def set_images(self, manifest: dict[str, Any], repository: str | None, version: str) -> dict[str, Any]:
        """ghcr.io/flannel-io/flannel:v0.28.9 -> <repository>/flannel:v0.28.9 (names and tags as released); refuse a
        manifest whose images are not the ones this release runs (the lock pins those)."""
        repo = (repository or RELEASE_REPOSITORY).rstrip("/")
        expected = set(self.expected_images(version, repository))
        for c in containers(manifest):
            c["image"] = f"{repo}/{c['image'].rsplit('/', 1)[-1]}"
        found = {c["image"] for c in containers(manifest)}
        if found != expected:
            die(
                f"the Flannel {version} manifest runs {', '.join(sorted(found))}, not {', '.join(sorted(expected))}",
                hint="the lock's flannel-manifest and nodeimage/cni/flannel.py CNI_PLUGIN_IMAGE must agree",
            )
        return manifest


FLANNEL = register(
    Flannel(
        name="flannel",
        artifact="flannel-manifest",
        description="Flannel (DaemonSet kube-flannel-ds; pod network in ConfigMap kube-flannel-cfg net-conf.json)",
        patch=PodCidrPatch("configmap-json", "ConfigMap", CONFIGMAP, NET_CONF, "Network"),
        # portmap: chained in cni-conf.json (v0.28.9 Documentation/kube-flannel.yml); bridge and host-local: what
        # the flannel plugin delegates to (flannel-io/cni-plugin, not read here: unconfirmed)
        plugins=("portmap", "bridge", "host-local", "loopback"),
    )
)

