"""Weave Net: the classic stack's pod network (weaveworks 2.8.1) and its maintained fork (rajch/weave, ReWeave).

The release manifest (``weave-daemonset-k8s-1.11.yaml``) is one ``kind: List``
whose DaemonSet ``weave-net`` runs containers ``weave`` and ``weave-npc``
and the init container ``weave-init`` (weaveworks/weave v2.8.1,
prog/weave-kube/weave-daemonset-k8s-1.11.yaml and bin/release). The pod
range is the ``IPALLOC_RANGE`` env entry of the ``weave`` container (Weave's
own default is 10.32.0.0/12).

Weaveworks closed in 2024 and its images stop at 2.8.1 on docker.io/weaveworks.
The fork rajch/weave keeps the same manifest (same List, objects and
containers; the ``weave`` container adds ``CHECKPOINT_DISABLE``) and publishes
``rajchaudhuri/weave-kube`` and ``rajchaudhuri/weave-npc`` (rajch/weave v2.9.0,
prog/weave-kube/weave-daemonset-k8s-1.11.yaml, reweave/Makefile
``REGISTRY_USER ?= rajchaudhuri``, reweave/tools/build-images.sh). It is its
own unit, ``weave-rajch``, pinned as the lock artifact ``weave-manifest-rajch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from nodeimage.cni import Cni, PodCidrPatch, containers, find, register
from nodeimage.log import die

DAEMONSET = "weave-net"
CONTAINERS = ("weave", "weave-npc")
IMAGES = ("weave-kube", "weave-npc")  # weave-init runs the weave-kube image too


@dataclass(frozen=True)
class Weave(Cni):
    # Where the release's images live; bin/release writes short names (weaveworks/weave-kube:2.8.1): Docker
    # Hub's, fully qualified here.
    release_repository: str = "docker.io/weaveworks"

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
        repo = repository or self.release_repository
        return [f"{repo}/{image}:{version}" for image in IMAGES]

    def set_images(self, manifest: dict[str, Any], repository: str | None, version: str) -> dict[str, Any]:
        """weaveworks/weave-kube:2.8.1 -> <repository>/weave-kube:2.8.1. The tag is the pinned version: the fork's
        source manifest names ``:latest`` (rajch/weave v2.9.0), and whether its release asset rewrites it is not
        known. ``imagePullPolicy: Always`` goes, as weaveworks' bin/release removed it (v2.8.1 bin/release: sed
        ``/imagePullPolicy: Always/d``): the images are baked, and a node without a registry must start them."""
        repository = (repository or self.release_repository).rstrip("/")
        for c in containers(manifest):
            name = c["image"].rsplit("/", 1)[-1].split(":", 1)[0]
            c["image"] = f"{repository}/{name}:{version}"
            if c.get("imagePullPolicy") == "Always":
                del c["imagePullPolicy"]
        return manifest


PATCH = PodCidrPatch("container-env", "DaemonSet", DAEMONSET, "weave", "IPALLOC_RANGE")

WEAVE = register(
    Weave(
        name="weave",
        artifact="weave-manifest",
        description="Weave Net 2.8.1 by Weaveworks, frozen (DaemonSet weave-net; pod range in IPALLOC_RANGE)",
        patch=PATCH,
    )
)

WEAVE_RAJCH = register(
    Weave(
        name="weave-rajch",
        artifact="weave-manifest-rajch",
        description="Weave Net, the maintained fork rajch/weave (images docker.io/rajchaudhuri; pod range in "
        "IPALLOC_RANGE)",
        patch=PATCH,
        release_repository="docker.io/rajchaudhuri",
    )
)
