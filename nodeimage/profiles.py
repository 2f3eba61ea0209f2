"""Build profiles: what to build (base OS, stack, CNI, component versions, VM shape, formats).

A profile is data, parsed once into frozen dataclasses and validated strictly:
an unknown key or a malformed value is one error naming the file, the key and
the value, before anything is downloaded or booted. The names it gives (a
distribution and release, a stack, a CNI, output formats) are checked against
the registries of those units.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nodeimage import cni as cni_units
from nodeimage import distros, formats, stacks
from nodeimage.log import die
from nodeimage.paths import PROFILES_DIR
from nodeimage.refs import IMAGE_REF_RE, REPOSITORY_RE

DEFAULT_PROFILE = "k8s-1.17"

# The disk writer installs BIOS GRUB (i386-pc) and the qemu code boots x86_64 guests.
ARCHES = ("amd64",)
BASE_SOURCES = ("cloud-image", "mmdebstrap")
KUBE_VERSION_RE = re.compile(r"^v1\.\d{1,2}\.\d{1,3}$")
COMPONENT_VERSION_RE = re.compile(r"^v?\d+(\.\d+){1,2}([.-][0-9A-Za-z.]+)?$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")


@dataclass(frozen=True)
class Base:
    source: str
    distro: str
    release: str
    artifact: str | None = None
    mirror: str | None = None


@dataclass(frozen=True)
class Kubernetes:
    version: str
    pod_cidr: str
    service_cidr: str
    # kubeadm's imageRepository and the registry of CRI-O's pause image
    image_repository: str = "registry.k8s.io"


@dataclass(frozen=True)
class CniSettings:
    name: str
    # where the CNI's images come from (None: as the release manifest names them)
    image_repository: str | None = None


@dataclass(frozen=True)
class VMShape:
    cpus: int
    memory_mib: int
    disk_gib: int


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    path: Path
    arch: str
    stack: str
    base: Base
    kubernetes: Kubernetes
    cni: CniSettings
    components: dict[str, str]
    vm: VMShape
    formats: tuple[str, ...]
    extra_images: tuple[str, ...] = ()

    def artifact_names(self) -> list[str]:
        """Every lock artifact this profile needs, base image included."""
        names = list(self.components)
        if self.base.source == "cloud-image" and self.base.artifact:
            names.append(self.base.artifact)
        return names

    def wanted(self) -> dict[str, str | None]:
        """Lock artifact name -> the version the profile expects (None: any, for the base image)."""
        wanted: dict[str, str | None] = dict(self.components)
        if self.base.source == "cloud-image" and self.base.artifact:
            wanted[self.base.artifact] = None
        return wanted


class _Reader:
    """Reads one mapping of a profile file, naming file and key in every error."""

    def __init__(self, path: Path, data: Any, where: str) -> None:
        self.path = path
        self.where = where
        if not isinstance(data, dict):
            self.fail(where or "(top level)", data, "a mapping")
        self.data: dict[str, Any] = data

    def fail(self, key: str, value: Any, expected: str) -> None:
        die(f"{self.path}: invalid value for '{key}': {value!r}", hint=f"expected {expected}")

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def check_keys(self, allowed: set[str], required: set[str]) -> None:
        for k in self.data:
            if k not in allowed:
                die(
                    f"{self.path}: unknown key '{self.key(str(k))}'",
                    hint=f"allowed keys here: {', '.join(sorted(allowed))}",
                )
        for k in sorted(required):
            if k not in self.data:
                die(f"{self.path}: missing required key '{self.key(k)}'")

    def str(self, name: str, pattern: re.Pattern[str] | None = None, expected: str = "a string") -> str:
        value = self.data.get(name)
        if not isinstance(value, str) or not value or (pattern and not pattern.match(value)):
            self.fail(self.key(name), value, expected)
        return value  # type: ignore[return-value]

    def choice(self, name: str, choices: list[str] | tuple[str, ...]) -> str:
        value = self.data.get(name)
        if value not in choices:
            self.fail(self.key(name), value, "one of " + ", ".join(choices))
        return value  # type: ignore[return-value]

    def int(self, name: str, low: int, high: int) -> int:
        value = self.data.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.fail(self.key(name), value, f"an integer from {low} to {high}")
        return value  # type: ignore[return-value]

    def cidr(self, name: str) -> str:
        value = self.data.get(name)
        try:
            net = ipaddress.ip_network(str(value), strict=True)
        except ValueError:
            self.fail(self.key(name), value, "an IPv4 network in CIDR form, e.g. 10.244.0.0/16")
        if not isinstance(value, str) or net.version != 4 or net.prefixlen > 24:
            self.fail(self.key(name), value, "an IPv4 network in CIDR form with a prefix of /24 or shorter")
        return value  # type: ignore[return-value]

    def repository(self, name: str, default: str | None) -> str | None:
        if name not in self.data:
            return default
        return self.str(name, REPOSITORY_RE, "a registry and optional path, e.g. registry.k8s.io or docker.io/org")

    def sub(self, name: str) -> _Reader:
        return _Reader(self.path, self.data.get(name), self.key(name))


def resolve_profile_path(name_or_path: str) -> Path:
    """A profile is named (profiles/<name>.yaml) or given as a path to a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    path = PROFILES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(available_profiles()) or "(none)"
        die(f"unknown profile: {name_or_path!r}", hint=f"available profiles: {known}; or give a path to a .yaml file")
    return path


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name_or_path: str = DEFAULT_PROFILE) -> Profile:
    """Load and validate a profile by name or path."""
    path = resolve_profile_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        die(f"{path}: not valid YAML: {exc}")
    except (OSError, UnicodeDecodeError) as exc:
        die(f"cannot read profile {path}: {exc}")
    return parse_profile(data, path)


def parse_profile(data: Any, path: Path) -> Profile:
    top = _Reader(path, data, "")
    top.check_keys(
        {"name", "description", "arch", "stack", "base", "kubernetes", "cni", "components", "images", "vm", "formats"},
        {"name", "arch", "stack", "base", "kubernetes", "cni", "components", "vm"},
    )
    name = top.str("name", NAME_RE, "a lower-case name of letters, digits, '.' and '-'")
    description = str(top.data.get("description", ""))
    arch = top.choice("arch", ARCHES)
    stack = top.choice("stack", stacks.names())

    b = top.sub("base")
    b.check_keys({"source", "artifact", "distro", "release", "mirror"}, {"source", "distro", "release"})
    source = b.choice("source", BASE_SOURCES)
    distro = distros.get(b.choice("distro", distros.names()))
    release = str(b.data["release"])
    if release not in [n for r in distro.releases for n in (r.codename, r.version)]:
        b.fail("release", b.data["release"], f"a {distro.name} release: {', '.join(distro.release_names())}")
    base = Base(
        source=source,
        distro=distro.name,
        release=distro.release(release).codename,
        artifact=b.str("artifact") if source == "cloud-image" else None,
        mirror=b.str("mirror", re.compile(r"^(https?|file)://\S+$"), "an http(s):// or file:// URL")
        if source == "mmdebstrap"
        else None,
    )

    k = top.sub("kubernetes")
    k.check_keys({"version", "pod_cidr", "service_cidr", "image_repository"}, {"version", "pod_cidr", "service_cidr"})
    kubernetes = Kubernetes(
        version=k.str("version", KUBE_VERSION_RE, "a Kubernetes version like v1.17.17"),
        pod_cidr=k.cidr("pod_cidr"),
        service_cidr=k.cidr("service_cidr"),
        image_repository=k.repository("image_repository", "registry.k8s.io") or "registry.k8s.io",
    )
    minor = stacks.get(stack).kubernetes_minor
    if not stacks.get(stack).supports_version(kubernetes.version):
        k.fail("version", kubernetes.version, f"a Kubernetes 1.{minor} version: the stack is {stack}")
    if ipaddress.ip_network(kubernetes.pod_cidr).overlaps(ipaddress.ip_network(kubernetes.service_cidr)):
        die(
            f"{path}: kubernetes.pod_cidr {kubernetes.pod_cidr} overlaps kubernetes.service_cidr "
            f"{kubernetes.service_cidr}",
            hint="choose non-overlapping ranges, e.g. 10.244.0.0/16 and 10.96.0.0/12",
        )

    n = top.sub("cni")
    n.check_keys({"name", "image_repository"}, {"name"})
    cni = CniSettings(name=n.choice("name", cni_units.names()), image_repository=n.repository("image_repository", None))

    c = top.sub("components")
    components: dict[str, str] = {}
    for comp in c.data:
        components[str(comp)] = c.str(str(comp), COMPONENT_VERSION_RE, "a version like v1.17.2 or 1.12.1")
    needed = [*stacks.get(stack).artifacts, cni_units.get(cni.name).artifact]
    missing = [a for a in needed if a not in components]
    unused = [a for a in components if a not in needed]
    if missing or unused:
        what = (f"missing {', '.join(missing)}" if missing else "") + (
            f"{'; ' if missing else ''}not used by stack {stack} and CNI {cni.name}: {', '.join(unused)}"
            if unused
            else ""
        )
        die(f"{path}: components do not match the stack: {what}", hint=f"stack {stack} installs {', '.join(needed)}")

    extra_images: tuple[str, ...] = ()
    if "images" in top.data:
        i = top.sub("images")
        i.check_keys({"extra"}, set())
        raw = i.data.get("extra", [])
        if not isinstance(raw, list) or not all(isinstance(r, str) and IMAGE_REF_RE.match(r) for r in raw):
            i.fail("extra", raw, "a list of image references with registry and tag, e.g. docker.io/library/pause:3.1")
        extra_images = tuple(raw)

    v = top.sub("vm")
    v.check_keys({"cpus", "memory_mib", "disk_gib"}, {"cpus", "memory_mib", "disk_gib"})
    vm = VMShape(
        cpus=v.int("cpus", 1, 64), memory_mib=v.int("memory_mib", 512, 262144), disk_gib=v.int("disk_gib", 2, 2048)
    )

    known = formats.selectable()
    formats_raw = top.data.get("formats", ["qcow2"])
    if not isinstance(formats_raw, list) or not formats_raw or any(f not in known for f in formats_raw):
        top.fail("formats", formats_raw, "a list drawn from " + ", ".join(known))
    return Profile(
        name=name,
        description=description,
        path=path,
        arch=arch,
        stack=stack,
        base=base,
        kubernetes=kubernetes,
        cni=cni,
        components=components,
        vm=vm,
        formats=tuple(formats_raw),
        extra_images=extra_images,
    )


def parse_formats(value: str) -> tuple[str, ...]:
    """Parse a --formats option such as 'qcow2,ova' (qcow2 is always written)."""
    items = formats.parse_option(value)
    return items if "qcow2" in items else ("qcow2", *items)
