"""Kubernetes stacks, one module each: what a node of that stack is made of.

A stack knows the kubeadm and kubelet APIs of its Kubernetes minor, how the
kubelet reaches CRI-O (flags or KubeletConfiguration), CRI-O's configuration,
the Kata handler and the RuntimeClass that selects it, the cgroup layout the
kubelet needs, the lock artifacts it installs and how their archives are laid
out, and the container images a node runs at first boot. The pipeline asks
these questions of the profile's stack and never tests which stack it is:
adding one is a new module here that calls :func:`register`, plus its tests.

Everything a stack produces is data: files to put in the image, archive
members to install, units to enable. The provision steps install that data;
they know nothing about stacks (see nodeimage.stage).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nodeimage.log import die
from nodeimage.registry import Registry

if TYPE_CHECKING:
    from nodeimage.nodespec import NodeSpec
    from nodeimage.secrets import ClusterParams, ClusterSecrets

CRI_SOCKET = "/var/run/crio/crio.sock"
CRI_ENDPOINT = "unix://" + CRI_SOCKET
KATA_LABEL_KEY = "katacontainers.io/kata-runtime"
KATA_LABEL = f"{KATA_LABEL_KEY}=true"
RUNTIME_CLASS_NAME = "kata"
UNAME = {"amd64": "x86_64", "arm64": "aarch64"}


@dataclass(frozen=True)
class File:
    """A file the image gets, rendered on the build host: an absolute path, its content and mode."""

    path: str
    content: str
    mode: int = 0o644


@dataclass(frozen=True)
class KataHandler:
    """The CRI-O runtime handler that runs Kata: one ``[crio.runtime.runtimes.<name>]`` table, as data.

    The RuntimeClass names it (``handler`` must equal the table's key), the
    stack's CRI-O configuration renders it, and the acceptance suite checks the
    image's merged CRI-O configuration against it.
    """

    name: str
    runtime_path: str
    runtime_type: str  # "oci" (a runc-like binary) or "vm" (a containerd shim v2)
    runtime_root: str = "/run/vc"
    runtime_config_path: str | None = None  # only with runtime_type "vm"
    # As kata-deploy writes it: a privileged Kata pod must not get every device of the host.
    privileged_without_host_devices: bool = True

    def table(self) -> dict[str, Any]:
        """The handler's keys and values, as CRI-O reads them from its configuration."""
        keys: dict[str, Any] = {
            "runtime_path": self.runtime_path,
            "runtime_type": self.runtime_type,
            "runtime_root": self.runtime_root,
        }
        if self.runtime_config_path:
            keys["runtime_config_path"] = self.runtime_config_path
        keys["privileged_without_host_devices"] = self.privileged_without_host_devices
        return keys

    def toml(self) -> str:
        """The ``[crio.runtime.runtimes.<name>]`` table in CRI-O's TOML."""
        def value(v: Any) -> str:
            return ("true" if v else "false") if isinstance(v, bool) else f'"{v}"'

        lines = [f"[crio.runtime.runtimes.{self.name}]"] + [f"{k} = {value(v)}" for k, v in self.table().items()]
        return join_lines(lines)


@dataclass(frozen=True)
class Install:
    """One install from a lock artifact.

    ``kind``: ``file`` installs ``member`` of the artifact's archive (or, with
    no member, the artifact file itself) at ``dest``; ``tree`` unpacks the
    archive directory ``member`` to the directory ``dest`` (replacing it);
    ``link`` makes ``dest`` a symlink to ``member``.
    """

    kind: str
    artifact: str
    member: str
    dest: str
    mode: int = 0o755


@dataclass(frozen=True)
class Settings:
    """What a stack's files depend on, from the build configuration."""

    kubernetes_version: str
    image_repository: str  # kubeadm's imageRepository and CRI-O's pause image registry
    arch: str
    versions: Mapping[str, str]  # lock artifact name -> pinned version
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def machine(self) -> str:
        return UNAME[self.arch]


@dataclass(frozen=True)
class Stack:
    """A Kubernetes stack. Subclasses set the data and render the files."""

    name: str
    description: str
    kubernetes_minor: int
    kubeadm_api: str
    kubelet_api: str = "kubelet.config.k8s.io/v1beta1"
    runtime_class_api: str = "node.k8s.io/v1"
    # The CRI-O handler that runs Kata; the RuntimeClass selects it by name.
    kata: KataHandler = KataHandler("kata", "/usr/local/bin/kata-runtime", "oci")
    # What first boot runs (as root) to decide whether the node may run Kata pods.
    kata_check: tuple[str, ...] = ("kata-runtime", "kata-check", "--no-network-checks")
    # kubeadm's nodeRegistration.criSocket: a path (kubeadm before 1.24) or a unix:// URL.
    cri_socket: str = CRI_SOCKET
    # "v1" (hybrid/legacy: the kubelet before 1.19 refuses the unified layout) or "v2" (unified).
    cgroup: str = "v2"
    # The iptables backend kube-proxy writes with: "legacy" for kube-proxy 1.17, else the distro's default.
    iptables: str = "default"
    # Lock artifacts this stack installs (the profile's components must pin each of them).
    artifacts: tuple[str, ...] = ()
    # Distribution packages this stack needs besides the distribution's node packages.
    packages: tuple[str, ...] = ()
    # Kernel modules loaded at every boot (modules-load.d).
    modules: tuple[str, ...] = ("overlay", "br_netfilter")
    sysctls: tuple[tuple[str, str], ...] = (
        ("net.bridge.bridge-nf-call-iptables", "1"),
        ("net.bridge.bridge-nf-call-ip6tables", "1"),
        ("net.ipv4.ip_forward", "1"),
    )
    units: tuple[str, ...] = ("crio.service", "kubelet.service")

    @property
    def kata_handler(self) -> str:
        """The name of the CRI-O handler that runs Kata (the RuntimeClass's ``handler``)."""
        return self.kata.name

    # --- the image -----------------------------------------------------------------------------

    def kernel_args(self) -> tuple[str, ...]:
        """Kernel command-line arguments the stack needs (the cgroup layout)."""
        return ("systemd.unified_cgroup_hierarchy=0",) if self.cgroup == "v1" else ()

    def os_files(self, s: Settings) -> list[File]:
        """Kernel settings of the OS layer: modules and sysctls at boot."""
        modules = "".join(f"{m}\n" for m in self.modules)
        sysctls = "".join(f"{k} = {v}\n" for k, v in self.sysctls)
        return [
            File(
                "/etc/modules-load.d/nodeimage-k8s.conf",
                f"# nodeimage ({self.name}): kernel modules CRI-O (overlay) and kube-proxy/the CNI (br_netfilter) "
                f"need\n{modules}",
            ),
            File(
                "/etc/sysctl.d/90-nodeimage-k8s.conf",
                f"# nodeimage ({self.name}): what kubeadm's preflight requires and bridged pod traffic needs.\n"
                f"{sysctls}",
            ),
        ]

    def installs(self, s: Settings) -> list[Install]:
        raise NotImplementedError

    def files(self, s: Settings) -> list[File]:
        raise NotImplementedError

    def images(self, s: Settings) -> list[str]:
        """The images kubeadm's `config images list` prints for this version and image repository."""
        raise NotImplementedError

    def directories(self, s: Settings) -> list[str]:
        """Empty directories the image must have (the programs fail or misbehave without them)."""
        return ["/etc/cni/net.d", "/opt/cni/bin", "/var/lib/kubelet", "/etc/kubernetes/manifests"]

    # --- first boot ----------------------------------------------------------------------------

    def runtime_class(self) -> dict[str, Any]:
        """The RuntimeClass that selects Kata, restricted to nodes labelled Kata-capable."""
        return {
            "apiVersion": self.runtime_class_api,
            "kind": "RuntimeClass",
            "metadata": {"name": RUNTIME_CLASS_NAME},
            "handler": self.kata_handler,
            "scheduling": {"nodeSelector": {KATA_LABEL_KEY: "true"}},
        }

    def kubeadm_documents(
        self, node: NodeSpec, params: ClusterParams, secrets: ClusterSecrets, *, kata: bool, image_repository: str
    ) -> list[dict[str, Any]]:
        """The kubeadm configuration documents of ``node`` (only fields of this stack's kubeadm API)."""
        raise NotImplementedError

    def supports_version(self, version: str) -> bool:
        parts = version.removeprefix("v").split(".")
        return len(parts) == 3 and parts[0] == "1" and parts[1] == str(self.kubernetes_minor)


_UNITS: Registry[Stack] = Registry("stack", __name__, __path__)
register = _UNITS.register
names = _UNITS.names


def get(name: str) -> Stack:
    """The stack ``name``; die listing the known ones."""
    return _UNITS.get(name)


def for_version(version: str) -> Stack:
    """The stack whose Kubernetes minor is ``version``'s (for seeds given a version, not a profile)."""
    for stack in _UNITS.load().values():
        if stack.supports_version(version):
            return stack
    minors = ", ".join(f"1.{s.kubernetes_minor}" for s in _UNITS.load().values())
    die(f"no stack for Kubernetes {version!r}", hint=f"nodeimage's stacks cover Kubernetes {minors}")


def join_lines(lines: Sequence[str]) -> str:
    return "".join(f"{line}\n" for line in lines)
