"""Base images built from a package mirror with mmdebstrap.

The base is a small, generalised, cloud-init-ready system: a kernel,
systemd, cloud-init (NoCloud), OpenSSH and what growpart and DHCP need. It
carries nothing machine-specific (empty machine-id, no SSH host keys, no
root password) and boots from the disk ``nodeimage.disk`` makes.

Reproducible: SOURCE_DATE_EPOCH is fixed (by default the release date of
the distro release, see ``nodeimage.distros``), the filesystem UUID is derived from
the build inputs, and the disk is byte-for-byte reproducible given the same
mirror content. Cached: a sidecar JSON beside the image records the inputs;
the same inputs reuse the image.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import requests

from nodeimage import distros, generalise
from nodeimage.disk import FORMAT_VERSION as DISK_FORMAT_VERSION
from nodeimage.disk import derive_hash_seed, tree_to_disk
from nodeimage.distros import Distro, Release
from nodeimage.fsutil import atomic_write, check_writable_dir, file_sha256
from nodeimage.log import debug, die, info, step, warn
from nodeimage.run import run, which

# Bump when the recipe changes in a way the file contents below do not show
# (e.g. mmdebstrap options), so cached bases are rebuilt.
RECIPE_VERSION = 2
DISK_GIB = 3
_UUID_NS = uuid.UUID("0b5e1a6e-5d0c-4a8e-9f58-6e6f64656261")


# The disk boots through BIOS GRUB (i386-pc) and the kernel packages are amd64 ones.
ARCHES = ("amd64",)

# --- files written into the tree -------------------------------------------------------------------

CLOUD_CFG = """\
# nodeimage base: take configuration from a NoCloud seed (a volume labelled
# cidata; nodeimage's seeds, Proxmox, plain qemu) or a config drive (OpenStack,
# and Cluster API Provider KubeVirt, which hands its user-data over on one),
# else run with none; keep the mirror the image was built from.
datasource_list: [ NoCloud, ConfigDrive, None ]
apt:
  preserve_sources_list: true
# The base has no locales package: C.UTF-8 needs no generation.
locale: C.UTF-8
# sudo and kubeadm want the node's own name to resolve.
manage_etc_hosts: true
# No DSA, and no grub-pc debconf (the disk's GRUB is not managed by dpkg).
ssh_genkeytypes: [rsa, ecdsa, ed25519]
grub_dpkg:
  enabled: false
"""

INTERFACES = """\
# interfaces(5): cloud-init writes the NIC configuration into interfaces.d.
auto lo
iface lo inet loopback

source /etc/network/interfaces.d/*
"""

HOSTKEYS_UNIT = """\
[Unit]
Description=Generate SSH host keys if none exist (nodeimage base images ship without them)
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key
After=cloud-init.service
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""

# Files every base gets, path (relative to the tree) -> content.
STATIC_FILES: dict[str, str] = {
    # The build host's resolver must not leak in; DHCP writes the real one at boot.
    "etc/resolv.conf": "",
    "etc/default/locale": "LANG=C.UTF-8\n",
    "etc/cloud/cloud.cfg.d/90_nodeimage.cfg": CLOUD_CFG,
    "etc/systemd/system/nodeimage-ssh-hostkeys.service": HOSTKEYS_UNIT,
    # qemu's PC machine has a floppy controller and no disk: probing it costs boot time and log noise.
    "etc/modprobe.d/nodeimage-no-floppy.conf": "blacklist floppy\n",
}

# Files the initramfs must see too: written before the kernel package is installed.
EARLY_FILES = ("etc/modprobe.d/nodeimage-no-floppy.conf",)


def _fstab(fs_uuid: str) -> str:
    header = "# <file system> <mount point> <type> <options> <dump> <pass>"
    return f"{header}\nUUID={fs_uuid} / ext4 errors=remount-ro 0 1\n"


# --- inputs ----------------------------------------------------------------------------------------


def get_release(distro: str, release: str) -> tuple[Distro, Release]:
    """Look up a supported release (by codename or version); die listing the supported ones otherwise."""
    d = distros.get(distro)
    return d, d.release(release)


def check_mirror(mirror: str) -> str:
    """Validate a mirror URL's form (http, https or file) and return it without a trailing slash."""
    parsed = urllib.parse.urlparse(mirror)
    if parsed.scheme not in ("http", "https", "file") or (parsed.scheme != "file" and not parsed.netloc):
        die(
            f"mirror must be an http://, https:// or file:// URL, got {mirror!r}",
            hint="e.g. http://deb.debian.org/debian or http://archive.ubuntu.com/ubuntu",
        )
    return mirror.rstrip("/")


def probe_mirror(mirror: str, release: str, timeout: float = 20.0) -> None:
    """Fail fast, naming the mirror, if it does not serve the release (instead of a long apt error)."""
    url = f"{mirror}/dists/{release}/Release"
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        if not Path(urllib.parse.unquote(parsed.path)).is_file():
            die(f"mirror {mirror} has no {release} release: {parsed.path} does not exist")
        return
    try:
        resp = requests.head(url, timeout=timeout, allow_redirects=True)
    except requests.RequestException as exc:
        die(
            f"cannot reach mirror {mirror}: {type(exc).__name__}",
            hint="check the URL and the network, or pass --mirror with a mirror this machine can reach",
        )
    if resp.status_code != 200:
        die(f"mirror {mirror} does not serve release {release!r}: {url} returned HTTP {resp.status_code}")


def mmdebstrap_command(rel: Release, *, mirror: str, arch: str, target: Path) -> list[str]:
    """The mmdebstrap command line that bootstraps ``rel`` into the directory ``target``."""
    cmd = [
        "mmdebstrap",
        "--mode=root",
        "--format=directory",
        "--variant=minbase",
        f"--architectures={arch}",
        f"--components={','.join(rel.components)}",
        f"--include={','.join(rel.base_packages)}",
    ]
    if rel.keyring:
        cmd.append(f"--keyring={rel.keyring}")
    # Written before the kernel is installed, so its initramfs carries the file too.
    for path in EARLY_FILES:
        text = STATIC_FILES[path].rstrip("\n")
        cmd.append(f'--essential-hook=mkdir -p "$1/{Path(path).parent}" && echo \'{text}\' > "$1/{path}"')
    return [*cmd, rel.codename, str(target), mirror]


def recipe_digest(distro: Distro, rel: Release) -> str:
    """A digest of everything in the recipe, so a changed recipe misses the cache."""
    command = mmdebstrap_command(rel, mirror="MIRROR", arch="ARCH", target=Path("TARGET"))
    parts = [
        f"{RECIPE_VERSION}/{DISK_FORMAT_VERSION}/{DISK_GIB}",
        INTERFACES,
        _fstab("x"),
        json.dumps(STATIC_FILES, sort_keys=True),
        json.dumps(command),
        generalise.render(_rules(distro)),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def base_inputs(distro: Distro, rel: Release, *, mirror: str, arch: str, epoch: int) -> dict[str, object]:
    """What a base image depends on: the cache key, recorded in the sidecar JSON."""
    return {
        "distro": distro.name,
        "release": rel.codename,
        "mirror": mirror,
        "arch": arch,
        "epoch": epoch,
        "packages": sorted(rel.base_packages),
        "components": list(rel.components),
        "recipe": recipe_digest(distro, rel),
    }


def fs_uuid_for(inputs: dict[str, object]) -> str:
    """A filesystem UUID derived from the inputs, so rebuilds are byte-identical."""
    return str(uuid.uuid5(_UUID_NS, json.dumps(inputs, sort_keys=True)))


# --- build -----------------------------------------------------------------------------------------


def build_base(
    *, distro: str, release: str, mirror: str, arch: str = "amd64", out_dir: Path, epoch: int | None = None
) -> Path:
    """Build (or reuse) ``out_dir/<distro>-<release>-<arch>.qcow2`` and return its path."""
    dist, rel = get_release(distro, release)
    if arch not in ARCHES:
        die(f"unknown architecture {arch!r}; supported: {', '.join(ARCHES)}")
    mirror = check_mirror(mirror)
    epoch = rel.epoch if epoch is None else int(epoch)
    out_dir = Path(out_dir)
    check_writable_dir(out_dir, "the base image directory")
    image = out_dir / f"{dist.name}-{rel.codename}-{arch}.qcow2"
    sidecar = image.with_suffix(".json")
    inputs = base_inputs(dist, rel, mirror=mirror, arch=arch, epoch=epoch)

    if _cached(image, sidecar, inputs):
        info(f"reusing base image {image} (built from the same inputs; see {sidecar.name})")
        return image

    with step(f"Building base image {dist.name} {rel.codename} ({arch}) from {mirror}"):
        which("mmdebstrap", "mmdebstrap")
        if os.geteuid() != 0:
            die("building a base image needs root (mmdebstrap --mode=root)", hint="run as root")
        if rel.keyring and not Path(rel.keyring).is_file():
            die(
                f"{distro} archive keyring missing: {rel.keyring} (mmdebstrap verifies the mirror with it)",
                hint=f"install the {distro}-keyring package (Ubuntu hosts), or copy the file there from such a host",
            )
        probe_mirror(mirror, rel.codename)
        fs_uuid = fs_uuid_for(inputs)
        out_dir.mkdir(parents=True, exist_ok=True)
        sidecar.unlink(missing_ok=True)  # the old record no longer describes what is being built
        with tempfile.TemporaryDirectory(prefix=".base-", dir=out_dir) as tmp, _no_mounts_left(Path(tmp)):
            tree = Path(tmp) / "tree"
            _bootstrap(rel, mirror=mirror, arch=arch, tree=tree, epoch=epoch)
            with step("Generalising the tree (fstab, cloud-init, no host keys, empty machine-id)"):
                configure_tree(tree, fs_uuid=fs_uuid, distro=dist)
            tree_to_disk(
                tree, image, size_gib=DISK_GIB, fs_uuid=fs_uuid, hash_seed=derive_hash_seed(fs_uuid), epoch=epoch
            )
        record = {**inputs, "fs_uuid": fs_uuid, "sha256": file_sha256(image), "image": image.name}
        atomic_write(sidecar, json.dumps(record, indent=2, sort_keys=True) + "\n")
    info(f"base image: {image}")
    return image


def _bootstrap(rel: Release, *, mirror: str, arch: str, tree: Path, epoch: int) -> None:
    cmd = mmdebstrap_command(rel, mirror=mirror, arch=arch, target=tree)
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    with step(f"mmdebstrap {rel.codename} ({len(rel.base_packages)} packages requested)"):
        proc = run(cmd, env=env, capture=True, check=False)
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        tail = "\n    ".join(lines[-12:])
        fetch = any(w in line for line in lines for w in ("Failed to fetch", "apt-get update failed", "Could not"))
        hint = f"check that {mirror} is reachable and serves {rel.codename}" if fetch else None
        die(f"mmdebstrap failed (exit {proc.returncode}) bootstrapping {rel.codename} from {mirror}:\n    {tail}", hint)


@contextlib.contextmanager
def _no_mounts_left(root: Path) -> Iterator[None]:
    """Unmount anything left mounted below ``root`` (a killed mmdebstrap leaves /proc, /sys, /dev there).

    Runs before the temporary directory is deleted, so deleting it can never
    reach into the host's /dev or /sys.
    """
    try:
        yield
    finally:
        for mountpoint in sorted(mounts_below(root), key=lambda p: len(p.parts), reverse=True):
            warn(f"unmounting {mountpoint}, left mounted by an interrupted bootstrap")
            run(["umount", "--lazy", mountpoint], check=False)
        if mounts_below(root):
            die(f"{root} still has file systems mounted below it; unmount them, then delete it by hand")


def mounts_below(root: Path) -> list[Path]:
    """Mount points at or below ``root``, from /proc/self/mountinfo."""
    root = root.resolve()
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            # field 5 is the mount point, with space, tab, newline and backslash octal-escaped
            point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]))
            if point == root or root in point.parents:
                found.append(point)
    return found


def _rules(distro: Distro) -> list[generalise.Rule]:
    return generalise.rules_for(distro.generalise_remove, distro.generalise_truncate)


def configure_tree(tree: Path, *, fs_uuid: str, distro: Distro) -> None:
    """Make a bootstrapped tree a generalised, cloud-init-ready base (no chroot needed)."""
    etc = tree / "etc"
    _write(etc / "fstab", _fstab(fs_uuid))
    for rel, text in STATIC_FILES.items():
        _write(tree / rel, text)
    if (etc / "network").is_dir():
        _write(etc / "network" / "interfaces", INTERFACES)
    wants = etc / "systemd" / "system" / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "nodeimage-ssh-hostkeys.service"
    link.unlink(missing_ok=True)
    link.symlink_to("/etc/systemd/system/nodeimage-ssh-hostkeys.service")
    for name in ("vmlinuz.old", "initrd.img.old"):
        path = tree / name
        if path.is_symlink():
            path.unlink()
    # Empty, not missing: systemd then generates a fresh ID on each new machine.
    _write(etc / "machine-id", "", mode=0o444)
    # The same list the build generalises its images with: no machine-id, host keys, cloud-init state.
    generalise.apply(tree, _rules(distro))
    debug(f"configured {tree} for UUID={fs_uuid}")


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)


def _cached(image: Path, sidecar: Path, inputs: dict[str, object]) -> bool:
    if not (image.is_file() and sidecar.is_file()):
        return False
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False
    recorded = {k: record.get(k) for k in inputs}
    if recorded != inputs:
        debug(f"base cache miss: {sidecar} records other inputs")
        return False
    if record.get("sha256") != file_sha256(image):
        debug(f"base cache miss: {image} changed since it was built")
        return False
    return True
