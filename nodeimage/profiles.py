"""Build profiles: what to build (base OS, component versions, VM shape, formats).

A profile is data, parsed once into frozen dataclasses and validated strictly:
an unknown key or a malformed value is one error naming the file, the key and
the value, before anything is downloaded or booted.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nodeimage.log import die

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILES_DIR = REPO_ROOT / "profiles"
DEFAULT_PROFILE = "k8s-1.17"

ARCHES = ("amd64", "arm64")
BASE_SOURCES = ("cloud-image", "mmdebstrap")
FORMATS = ("qcow2", "ova")
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
    base: Base
    kubernetes: Kubernetes
    components: dict[str, str]
    vm: VMShape
    formats: tuple[str, ...]

    def artifact_names(self) -> list[str]:
        """Every lock artifact this profile needs, base image included."""
        names = list(self.components)
        if self.base.source == "cloud-image" and self.base.artifact:
            names.append(self.base.artifact)
        return names


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

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
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

    def sub(self, name: str) -> _Reader:
        return _Reader(self.path, self.data.get(name), self.key(name))


def resolve_profile_path(name_or_path: str) -> Path:
    """A profile is named (profiles/<name>.yaml) or given as a path to a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate
    path = PROFILES_DIR / f"{name_or_path}.yaml"
    if not path.exists():
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
    return parse_profile(data, path)


def parse_profile(data: Any, path: Path) -> Profile:
    top = _Reader(path, data, "")
    top.check_keys(
        {"name", "description", "arch", "base", "kubernetes", "components", "vm", "formats"},
        {"name", "arch", "base", "kubernetes", "components", "vm"},
    )
    name = top.str("name", NAME_RE, "a lower-case name of letters, digits, '.' and '-'")
    description = str(top.data.get("description", ""))
    arch = top.choice("arch", ARCHES)

    b = top.sub("base")
    b.check_keys({"source", "artifact", "distro", "release", "mirror"}, {"source", "distro", "release"})
    source = b.choice("source", BASE_SOURCES)
    base = Base(
        source=source,
        distro=b.choice("distro", ("ubuntu", "debian")),
        release=str(b.data["release"]),
        artifact=b.str("artifact") if source == "cloud-image" else None,
        mirror=b.str("mirror", re.compile(r"^(https?|file)://\S+$"), "an http(s):// or file:// URL")
        if source == "mmdebstrap"
        else None,
    )

    k = top.sub("kubernetes")
    k.check_keys({"version", "pod_cidr", "service_cidr"}, {"version", "pod_cidr", "service_cidr"})
    kubernetes = Kubernetes(
        version=k.str("version", KUBE_VERSION_RE, "a Kubernetes version like v1.17.17"),
        pod_cidr=k.cidr("pod_cidr"),
        service_cidr=k.cidr("service_cidr"),
    )
    if ipaddress.ip_network(kubernetes.pod_cidr).overlaps(ipaddress.ip_network(kubernetes.service_cidr)):
        die(
            f"{path}: kubernetes.pod_cidr {kubernetes.pod_cidr} overlaps kubernetes.service_cidr "
            f"{kubernetes.service_cidr}",
            hint="choose non-overlapping ranges, e.g. 10.244.0.0/16 and 10.96.0.0/12",
        )

    c = top.sub("components")
    components: dict[str, str] = {}
    for comp in c.data:
        components[str(comp)] = c.str(str(comp), COMPONENT_VERSION_RE, "a version like v1.17.2 or 1.12.1")
    if not components:
        c.fail("components", c.data, "at least one lock artifact name mapped to its version")

    v = top.sub("vm")
    v.check_keys({"cpus", "memory_mib", "disk_gib"}, {"cpus", "memory_mib", "disk_gib"})
    vm = VMShape(
        cpus=v.int("cpus", 1, 64), memory_mib=v.int("memory_mib", 512, 262144), disk_gib=v.int("disk_gib", 2, 2048)
    )

    formats_raw = top.data.get("formats", ["qcow2"])
    if not isinstance(formats_raw, list) or not formats_raw or any(f not in FORMATS for f in formats_raw):
        top.fail("formats", formats_raw, "a list drawn from " + ", ".join(FORMATS))
    return Profile(
        name=name,
        description=description,
        path=path,
        arch=arch,
        base=base,
        kubernetes=kubernetes,
        components=components,
        vm=vm,
        formats=tuple(formats_raw),
    )


def parse_formats(value: str) -> tuple[str, ...]:
    """Parse a --formats option such as 'qcow2,ova'."""
    items = tuple(f.strip() for f in value.split(",") if f.strip())
    bad = [f for f in items if f not in FORMATS]
    if not items or bad:
        die(f"invalid --formats value: {value!r}", hint="a comma-separated list drawn from " + ", ".join(FORMATS))
    if "qcow2" not in items:
        items = ("qcow2", *items)
    return items
