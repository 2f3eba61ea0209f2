"""Weave Net: the classic stack's pod network (weaveworks 2.8.1, or the maintained fork's images).

The release manifest (``weave-daemonset-k8s-1.11.yaml``) is one ``kind: List``
whose DaemonSet ``weave-net`` runs containers ``weave`` and ``weave-npc``
and the init container ``weave-init`` (weaveworks/weave v2.8.1,
prog/weave-kube/weave-daemonset-k8s-1.11.yaml and bin/release). The pod
range is the ``IPALLOC_RANGE`` env entry of the ``weave`` container (Weave's
own default is 10.32.0.0/12).
"""

from __future__ import annotations

from typing import Any

import yaml

from nodeimage.cni import Cni, PodCidrPatch, find, items, register
from nodeimage.log import die

DAEMONSET = "weave-net"
CONTAINERS = ("weave", "weave-npc")
# bin/release writes short names (weaveworks/weave-kube:2.8.1): Docker Hub's, fully qualified here
RELEASE_REPOSITORY = "docker.io/weaveworks"


class Weave(Cni):
    def load(self, text: str, source: str) -> dict[str, Any]:
        try:
            manifest = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            die(f"{source}: the Weave manifest is not YAML: {exc}")
        ds = find(manifest, "DaemonSet", DAEMONSET) if isinstance(manifest, dict) else None
        names = [c.get("name") for c in ds["spec"]["template"]["spec"]["containers"]] if ds else []
        if not isinstance(manifest, dict) or manifest.get("kind") != "List" or not ds or set(CONTAINERS) - set(names):
            die(
                f"{source} is not the Weave Net release manifest",
                hint=f"expected a kind: List with DaemonSet {DAEMONSET} running containers {', '.join(CONTAINERS)}",
            )
        return manifest

    def expected_images(self, version: str, repository: str | None) -> list[str]:
        """weave-init runs the weave-kube image too: two images."""
        repo = repository or RELEASE_REPOSITORY
        return [f"{repo}/weave-kube:{version}", f"{repo}/weave-npc:{version}"]

    def set_images(self, manifest: dict[str, Any], repository: str | None) -> dict[str, Any]:
        repository = repository or RELEASE_REPOSITORY
        for item in items(manifest):
            pod = item.get("spec", {}).get("template", {}).get("spec", {})
            for c in [*pod.get("initContainers", []), *pod.get("containers", [])]:
                # weaveworks/weave-kube:2.8.1 -> <repository>/weave-kube:2.8.1
                c["image"] = f"{repository.rstrip('/')}/{c['image'].rsplit('/', 1)[-1]}"
        return manifest


WEAVE = register(
    Weave(
        name="weave",
        artifact="weave-manifest",
        description="Weave Net (DaemonSet weave-net; pod range in IPALLOC_RANGE)",
        patch=PodCidrPatch("container-env", "DaemonSet", DAEMONSET, "weave", "IPALLOC_RANGE"),
    )
)
