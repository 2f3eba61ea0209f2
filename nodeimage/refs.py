"""Container image references: their form, and where a mirror holds them.

A reference here is always fully qualified: ``registry[:port]/repository:tag``
(no Docker Hub short names, whose meaning depends on a node's registries.conf).
"""

from __future__ import annotations

import re

# registry[:port] then repository path components (docker/distribution reference grammar, lower case)
REPOSITORY_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
IMAGE_REF_RE = re.compile(REPOSITORY_RE.pattern.removesuffix("*$") + r"+:[\w][\w.-]{0,127}$")


def split(ref: str) -> tuple[str, str, str]:
    """``registry.k8s.io/pause:3.1`` -> (``registry.k8s.io``, ``pause``, ``3.1``)."""
    name, _, tag = ref.rpartition(":")
    registry, _, path = name.partition("/")
    return registry, path, tag


def mirrored(ref: str, mirror_host: str) -> str:
    """Where a registry mirror holds ``ref``'s repository: ``<mirror>/<registry>/<path>`` (the same
    ``<mirror>/<host>/<path>`` rule as for downloaded artifacts)."""
    registry, path, _ = split(ref)
    return f"{mirror_host.rstrip('/')}/{registry}/{path}"
