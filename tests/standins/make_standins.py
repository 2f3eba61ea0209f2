#!/usr/bin/env python3
"""Generate TEST STAND-INS for the upstream artifacts of the lock file, and a lock that pins them.

The build and test machines cannot reach dl.k8s.io or GitHub releases, so the
end-to-end build installs these instead: archives with the same file names and
the same internal layout as the real ones (see /work/shared/UPSTREAM.md, "What
is inside each archive"), whose programs are small scripts that print the
pinned version and record how they were called (tests/standins/bin/standin.py).
They prove the pipeline, the install steps and first boot; they do not prove
Kubernetes, CRI-O or Kata. See README.md beside this file.

Archives are deterministic (sorted entries, fixed mtime, uid/gid 0, gzip mtime
0, xz without timestamps), so the digests in the stand-in lock are stable.

    make_standins.py [--lock artifacts.lock.yaml] [--arch amd64] OUT_DIR
"""

from __future__ import annotations

import argparse
import copy
import gzip
import hashlib
import io
import lzma
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

HERE = Path(__file__).resolve().parent
STANDIN_TEMPLATE = HERE / "bin" / "standin.py"
CRIO_BUNDLE = HERE / "crio-bundle"
WEAVE_TEMPLATE = HERE / "weave-daemonset-k8s-1.11.yaml.in"

MTIME = 1600000000  # fixed entry time: 2020-09-13, around the pinned releases
NOTE = "nodeimage test stand-in, NOT the upstream artifact"

CNI_PLUGINS = (
    "bandwidth",
    "bridge",
    "dhcp",
    "firewall",
    "flannel",
    "host-device",
    "host-local",
    "ipvlan",
    "loopback",
    "macvlan",
    "portmap",
    "ptp",
    "sbr",
    "static",
    "tuning",
    "vlan",
)
KATA_WRAPPERS = {  # wrapper script -> the configuration it passes to kata-runtime
    "kata-qemu": "configuration-qemu.toml",
    "kata-fc": "configuration-fc.toml",
    "kata-clh": "configuration-clh.toml",
    "kata-qemu-virtiofs": "configuration-qemu-virtiofs.toml",
}
KATA_DEFAULTS = "/opt/kata/share/defaults/kata-containers"
UNAME = {"amd64": "x86_64", "arm64": "aarch64"}
SKIPPED_SUFFIX = "-cloudimg"  # base images are built from Debian's mirror in the tests, not stood in


@dataclass(frozen=True)
class Entry:
    """One archive member: a directory (no data, no link), a file, or a symlink."""

    name: str
    data: bytes | None = None
    mode: int = 0o644
    link: str | None = None


def standin_program(tool: str, kind: str, version: str) -> bytes:
    """The stand-in script for ``tool`` (behaviour ``kind``) printing ``version``."""
    text = STANDIN_TEMPLATE.read_text()
    for key, value in (("@TOOL@", tool), ("@KIND@", kind), ("@VERSION@", version)):
        text = text.replace(key, value)
    return text.encode()


def _with_parents(entries: list[Entry], root: str) -> list[Entry]:
    """Add the directory entries above every member (up to and including ``root``)."""
    names = {e.name.rstrip("/") for e in entries}
    dirs: set[str] = set()
    for e in entries:
        parts = e.name.rstrip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in names and (d + "/").startswith(root):
                dirs.add(d)
    return entries + [Entry(d + "/", mode=0o755) for d in dirs]


def tar_bytes(entries: list[Entry]) -> bytes:
    """A deterministic uncompressed tar of ``entries``, sorted by name."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for e in sorted(entries, key=lambda e: e.name):
            info = tarfile.TarInfo(e.name)
            info.mtime = MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = e.mode
            if e.link is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = e.link
                info.mode = 0o777
                tar.addfile(info)
            elif e.data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def xz_bytes(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6)


def _bare(version: str) -> str:
    return version.removeprefix("v")


# --- one builder per lock artifact: (version, url basename, arch) -> file bytes --------------------


def kubernetes_node(version: str, basename: str, arch: str) -> bytes:
    src = gzip_bytes(tar_bytes([Entry("README.md", f"# {NOTE}: kubernetes {version} sources\n".encode())]))
    entries = [
        Entry(f"kubernetes/node/bin/{tool}", standin_program(tool, tool, version), 0o755)
        for tool in ("kubelet", "kubeadm", "kubectl", "kube-proxy")
    ]
    entries += [
        Entry("kubernetes/kubernetes-src.tar.gz", src),
        Entry("kubernetes/LICENSES", f"{NOTE}: licenses of kubernetes {version}\n".encode()),
    ]
    return gzip_bytes(tar_bytes(_with_parents(entries, "kubernetes/")))


def cri_o(version: str, basename: str, arch: str) -> bytes:
    top = basename.removesuffix(".tar.gz")
    machine = UNAME[arch]
    entries = [
        Entry(f"{top}/bin/crio-{machine}-static-glibc", standin_program("crio", "crio", version), 0o755),
        Entry(f"{top}/bin/crio-{machine}-static-musl", standin_program("crio", "crio", version), 0o755),
        Entry(f"{top}/bin/pinns", standin_program("pinns", "generic", version), 0o755),
    ]
    for path in sorted(CRIO_BUNDLE.rglob("*")):
        if path.is_file():
            entries.append(Entry(f"{top}/{path.relative_to(CRIO_BUNDLE).as_posix()}", path.read_bytes()))
    return gzip_bytes(tar_bytes(_with_parents(entries, top + "/")))


def conmon(version: str, basename: str, arch: str) -> bytes:
    return standin_program("conmon", "conmon", version)


def _kata_config(name: str, machine: str) -> bytes:
    hypervisor = {"fc": "firecracker", "clh": "clh"}.get(name.split("-")[1].split(".")[0], "qemu")
    binary = {"firecracker": "firecracker", "clh": "cloud-hypervisor"}.get(hypervisor, f"qemu-system-{machine}")
    return (
        f"# {NOTE}: Kata Containers {name}\n"
        f"[hypervisor.{hypervisor}]\n"
        f'path = "/opt/kata/bin/{binary}"\n'
        'kernel = "/opt/kata/share/kata-containers/vmlinuz.container"\n'
        'image = "/opt/kata/share/kata-containers/kata-containers.img"\n\n'
        "[proxy.kata]\n"
        'path = "/opt/kata/libexec/kata-containers/kata-proxy"\n\n'
        "[shim.kata]\n"
        'path = "/opt/kata/libexec/kata-containers/kata-shim"\n\n'
        "[netmon]\n"
        'path = "/opt/kata/libexec/kata-containers/kata-netmon"\n\n'
        "[runtime]\n"
        'internetworking_model = "tcfilter"\n'
    ).encode()


def kata_static(version: str, basename: str, arch: str) -> bytes:
    machine = UNAME[arch]
    base = "./opt/kata"
    defaults = f"{base}/share/defaults/kata-containers"
    entries = [Entry(f"{base}/bin/kata-runtime", standin_program("kata-runtime", "kata-runtime", version), 0o755)]
    for tool in ("containerd-shim-kata-v2", f"qemu-system-{machine}", "virtiofsd", "firecracker"):
        entries.append(Entry(f"{base}/bin/{tool}", standin_program(tool, "generic", version), 0o755))
    for wrapper, config in KATA_WRAPPERS.items():
        script = f'#!/bin/bash\n/opt/kata/bin/kata-runtime --kata-config "{KATA_DEFAULTS}/{config}" $@\n'
        entries.append(Entry(f"{base}/bin/{wrapper}", script.encode(), 0o755))
    for tool in ("kata-proxy", "kata-shim", "kata-netmon"):
        program = standin_program(tool, "generic", version)
        entries.append(Entry(f"{base}/libexec/kata-containers/{tool}", program, 0o755))
    for config in KATA_WRAPPERS.values():
        entries.append(Entry(f"{defaults}/{config}", _kata_config(config, machine)))
    entries.append(Entry(f"{defaults}/configuration.toml", link="configuration-qemu.toml"))
    for blob in ("vmlinuz.container", "kata-containers.img"):
        entries.append(Entry(f"{base}/share/kata-containers/{blob}", f"{NOTE}: {blob}\n".encode()))
    return xz_bytes(tar_bytes(_with_parents(entries, "./")))


def cni_plugins(version: str, basename: str, arch: str) -> bytes:
    entries = [Entry("./", mode=0o755)]
    entries += [Entry(f"./{name}", standin_program(name, "cni", version), 0o755) for name in CNI_PLUGINS]
    return gzip_bytes(tar_bytes(entries))


def crictl(version: str, basename: str, arch: str) -> bytes:
    return gzip_bytes(tar_bytes([Entry("crictl", standin_program("crictl", "crictl", version), 0o755)]))


def weave_manifest(version: str, basename: str, arch: str) -> bytes:
    return WEAVE_TEMPLATE.read_text().replace("@VERSION@", _bare(version)).encode()


BUILDERS: dict[str, Callable[[str, str, str], bytes]] = {
    "kubernetes-node": kubernetes_node,
    "cri-o": cri_o,
    "conmon": conmon,
    "kata-static": kata_static,
    "cni-plugins": cni_plugins,
    "crictl": crictl,
    "weave-manifest": weave_manifest,
}


def mirror_path(mirror_dir: Path, url: str) -> Path:
    """Where a mirror directory holds ``url``: ``<mirror_dir>/<url host>/<url path>``."""
    parts = urlsplit(url)
    return mirror_dir / parts.netloc / parts.path.lstrip("/")


def _digest(algorithm: str, data: bytes) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def make_standins(real_lock: Path, out_dir: Path, arch: str = "amd64") -> tuple[Path, Path]:
    """Write stand-in artifacts under ``out_dir/mirror`` and their lock as ``out_dir/artifacts.lock.yaml``.

    Returns (standin_lock_path, mirror_dir). Every lock artifact except base
    images gets a stand-in for ``arch`` (and for arch-independent ``all``
    entries); an artifact without a builder is an error, so a new lock entry
    cannot silently go untested.
    """
    if arch not in UNAME:
        raise ValueError(f"unsupported arch {arch!r}; expected one of {sorted(UNAME)}")
    lock = yaml.safe_load(Path(real_lock).read_text())
    mirror_dir = Path(out_dir) / "mirror"
    standin_artifacts: dict[str, dict] = {}
    for name, entry in lock["artifacts"].items():
        if name.endswith(SKIPPED_SUFFIX):
            continue
        if name not in BUILDERS:
            raise ValueError(f"no stand-in builder for lock artifact {name!r}; add one to {Path(__file__).name}")
        arches = {}
        for key in (arch, "all"):
            real = entry.get("arches", {}).get(key)
            if real is None:
                continue
            basename = urlsplit(real["url"]).path.rsplit("/", 1)[-1]
            data = BUILDERS[name](str(entry["version"]), basename, arch)
            algorithm = (real.get("checksum") or "sha256:").split(":", 1)[0]
            target = mirror_path(mirror_dir, real["url"])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            arches[key] = {
                "url": real["url"],
                "checksum": _digest(algorithm, data),
                "checksum_source": "trust-on-first-use",
                "checksum_note": NOTE,
                "size": len(data),
            }
        if arches:
            standin = copy.deepcopy({k: v for k, v in entry.items() if k != "arches"})
            standin["arches"] = arches
            standin_artifacts[name] = standin
    standin_lock = {k: v for k, v in lock.items() if k != "artifacts"}
    standin_lock["artifacts"] = standin_artifacts
    lock_path = Path(out_dir) / "artifacts.lock.yaml"
    header = (
        "# nodeimage test stand-ins, NOT the upstream artifacts.\n"
        "# Generated by tests/standins/make_standins.py from the real lock: same names, versions\n"
        "# and URLs; digests and sizes are those of the stand-ins in the mirror directory beside it.\n"
    )
    lock_path.write_text(header + yaml.safe_dump(standin_lock, sort_keys=False))
    return lock_path, mirror_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--lock", type=Path, default=HERE.parent.parent / "artifacts.lock.yaml")
    parser.add_argument("--arch", default="amd64", choices=sorted(UNAME))
    args = parser.parse_args(argv)
    lock_path, mirror_dir = make_standins(args.lock, args.out_dir, args.arch)
    print(f"lock:   {lock_path}\nmirror: {mirror_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
