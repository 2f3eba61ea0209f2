"""Base distributions, one module each (after mkosi's ``distributions/``).

A distribution knows its releases (and how ``invoke base`` bootstraps them),
its package tool and the packages every node needs, how OVF names it, and
what it adds to the generalisation list. Adding one is a new module here that
calls :func:`register`, plus its tests; nothing else in the pipeline changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodeimage.log import die
from nodeimage.registry import Registry


@dataclass(frozen=True)
class Release:
    """One release of a distribution."""

    codename: str
    version: str
    # Default SOURCE_DATE_EPOCH of a base built by `invoke base`: the release's first publication
    # date, a value that depends on nothing but the release.
    epoch: int
    components: tuple[str, ...] = ("main",)
    # Packages `invoke base` bootstraps with mmdebstrap (kernel, systemd, cloud-init, ssh, ...).
    base_packages: tuple[str, ...] = ()
    # The archive keyring mmdebstrap verifies the mirror with (None: the host's default).
    keyring: str | None = None


@dataclass(frozen=True)
class Distro:
    """A base distribution: its releases and how an image of it is provisioned and described."""

    name: str
    releases: tuple[Release, ...]
    # CIM OSType id, VMware guest id and description for the OVF descriptor.
    ovf_cim_id: int
    ovf_vmware_id: str
    ovf_description: str
    # The package tool the provision steps use ("apt": apt-get and dpkg).
    package_tool: str = "apt"
    # Where the installed-package database lies in the image (read for the SBOM without booting).
    package_db: str = "/var/lib/dpkg/status"
    # Packages every node of this distribution needs, whatever the stack (kubeadm's and CRI-O's host tools).
    node_packages: tuple[str, ...] = ()
    # Paths this distribution adds to the generalisation list (see nodeimage.generalise).
    generalise_remove: tuple[str, ...] = ()
    generalise_truncate: tuple[str, ...] = ()

    def release(self, name: str) -> Release:
        """A release by codename or version ("bookworm" or "12"); die naming the supported ones."""
        for rel in self.releases:
            if name in (rel.codename, rel.version):
                return rel
        known = ", ".join(f"{r.codename} ({r.version})" for r in self.releases)
        die(f"unknown {self.name} release {name!r}", hint=f"supported {self.name} releases: {known}")

    def release_names(self) -> list[str]:
        return [r.codename for r in self.releases]


_UNITS: Registry[Distro] = Registry("distribution", __name__, __path__)
register = _UNITS.register
names = _UNITS.names


def get(name: str) -> Distro:
    """The distribution ``name``; die listing the known ones."""
    return _UNITS.get(name)
