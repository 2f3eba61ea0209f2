"""The host-to-guest contract: everything the provision steps need, as plain files.

The build host renders every file and decision; the provision steps only
install. ``write_stage`` lays out one directory per layer (see
nodeimage.layers) beside a shared ``lib.sh`` and ``build.env``::

    build.env                   shell assignments (profile, stack, arch, iptables backend,
                                kernel arguments); lib.sh sources it (DEBUG comes in the environment)
    lib.sh                      helpers of the steps
    os/steps/NN-*.sh            the OS layer's steps (run in the build VM by packer)
    os/packages.txt             distribution packages, one per line
    os/rootfs/, os/rootfs.tsv   files installed into / with their modes (sysctls, modules, apt settings)
    stack/steps/NN-*.sh         the stack layer's steps (run in a chroot of the image tree)
    stack/artifacts/            the lock artifacts, verified again by checksums.sha256/.sha512
    stack/install.tsv           kind, artifact file, member, destination, mode (one install per line)
    stack/directories.txt       empty directories the programs need
    stack/units.txt             units to enable
    stack/images.txt            the container images baked after the stack's steps (ref, platform, digest)
    stack/rootfs/, rootfs.tsv   rendered configuration (CRI-O, kubelet, crictl, ...)
    node/steps/NN-*.sh          the node layer's steps (chroot)
    node/rootfs/, rootfs.tsv    the first-boot program and its unit, its baked data, /etc/nodeimage-release
    node/units.txt              units to enable

Nothing in a step parses JSON or renders a template: there is no Python in them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

from nodeimage import __version__
from nodeimage.config import BuildConfig
from nodeimage.fsutil import file_sha256
from nodeimage.log import die
from nodeimage.paths import BOOTSTRAP_PROGRAM, PROVISION_DIR, PROVISION_FILES
from nodeimage.stacks import File

LAYERS = ("os", "stack", "node")
SHARE = "/usr/local/share/nodeimage"
RELEASE_FILE = "/etc/nodeimage-release"
STAGE_IN_IMAGE = "/var/tmp/nodeimage"
BOOTSTRAP_UNIT = "nodeimage-bootstrap.service"
_TOKEN = re.compile(r"^[A-Za-z0-9._:+/@=-]+$")


def layer_steps(layer: str) -> list[Path]:
    steps = sorted((PROVISION_DIR / layer).glob("[0-9][0-9]-*.sh"))
    if not steps:
        die(f"no provision steps found in {PROVISION_DIR / layer}")
    return steps


def build_env(config: BuildConfig) -> str:
    """build.env: what the steps read besides their files, as shell assignments."""
    values = {
        "NODEIMAGE_PROFILE": config.profile.name,
        "NODEIMAGE_STACK": config.stack.name,
        "NODEIMAGE_ARCH": config.profile.arch,
        "NODEIMAGE_DISTRO": config.distro.name,
        "NODEIMAGE_IPTABLES": config.stack.iptables,
        "NODEIMAGE_KERNEL_ARGS": " ".join(config.stack.kernel_args()),
    }
    lines = ["# nodeimage build.env: sourced by lib.sh (written by nodeimage.stage)"]
    lines += [f"{k}={shlex.quote(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def _write_files(layer_dir: Path, files: list[File]) -> None:
    """Write ``files`` under ``layer_dir/rootfs`` and list them with their modes in ``rootfs.tsv``."""
    root = layer_dir / "rootfs"
    lines = []
    for f in sorted(files, key=lambda f: f.path):
        if not f.path.startswith("/") or ".." in Path(f.path).parts or not _TOKEN.match(f.path):
            raise ValueError(f"stage file path must be absolute, plain and without '..': {f.path!r}")
        dest = root / f.path.lstrip("/")
        if dest.exists():
            raise ValueError(f"two files for {f.path} in one layer")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(f.content)
        dest.chmod(f.mode)
        lines.append(f"{f.mode:04o}\t{f.path}\n")
    (layer_dir / "rootfs.tsv").write_text("".join(lines))


def _copy_steps(stage: Path, layer: str) -> None:
    steps = stage / layer / "steps"
    steps.mkdir(parents=True)
    for script in layer_steps(layer):
        shutil.copy2(script, steps / script.name)
        (steps / script.name).chmod(0o755)


def os_files(config: BuildConfig) -> list[File]:
    files = config.stack.os_files(config.settings())
    files.append(File("/etc/apt/apt.conf.d/20auto-upgrades", (PROVISION_FILES / "apt" / "20auto-upgrades").read_text()))
    args = " ".join(config.stack.kernel_args())
    if args:
        # Read by update-grub where the distribution manages GRUB (Ubuntu's cloud images); nodeimage's
        # own disks (invoke base) get the same arguments from the disk writer.
        files.append(
            File(
                "/etc/default/grub.d/90-nodeimage.cfg",
                f"# nodeimage ({config.stack.name}): kernel arguments the stack needs\n"
                f'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX {args}"\n',
            )
        )
    return files


def packages(config: BuildConfig) -> list[str]:
    return list(dict.fromkeys([*config.distro.node_packages, *config.stack.packages]))


def install_lines(config: BuildConfig) -> list[str]:
    """install.tsv: one line per install, every field a plain token (tabs separate them)."""
    by_name = {e.name: e for e in config.components()}
    lines = []
    for op in config.stack.installs(config.settings()):
        if op.artifact not in by_name:
            raise ValueError(f"stack {config.stack.name} installs {op.artifact}, which the profile does not pin")
        fields = [op.kind, f"artifacts/{by_name[op.artifact].filename}", op.member or "-", op.dest, f"{op.mode:04o}"]
        for value in fields:
            if "\t" in value or "\n" in value or not _TOKEN.match(value):
                raise ValueError(f"install field {value!r} of {op} is not a plain token")
        lines.append("\t".join(fields))
    return lines


def checksum_lines(config: BuildConfig) -> dict[str, list[str]]:
    """checksums.<algorithm>: `<hex>  artifacts/<file>` lines for sha256sum/sha512sum --check."""
    out: dict[str, list[str]] = {}
    for e in config.components():
        assert e.algorithm and e.digest, e
        out.setdefault(e.algorithm, []).append(f"{e.digest}  artifacts/{e.filename}")
    return out


def cni_manifest(config: BuildConfig, manifest_file: Path) -> dict[str, Any]:
    """The CNI's release manifest, checked and with its images pointed at the profile's registry."""
    entry = config.entry(config.cni.artifact)
    try:
        text = manifest_file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        die(f"cannot read the {config.cni.name} manifest {manifest_file} ({entry.label}): {exc}")
    manifest = config.cni.load(text, f"{entry.label} ({entry.url})")
    return config.cni.set_images(manifest, config.profile.cni.image_repository, entry.version)


def build_record(config: BuildConfig) -> dict[str, Any]:
    """build.json: what this image was built from (kept in the image for people and tools)."""
    return {
        "profile": config.profile.name,
        "stack": config.stack.name,
        "arch": config.profile.arch,
        "base": {"distro": config.distro.name, "release": config.release.codename},
        "kubernetes": {
            "version": config.profile.kubernetes.version,
            "image_repository": config.profile.kubernetes.image_repository,
        },
        "cni": config.cni.name,
        "components": {e.name: {"version": e.version, "checksum": e.checksum} for e in config.components()},
        "nodeimage_version": __version__,
        "lock_sha256": config.lock_sha256,
    }


def release_file(config: BuildConfig) -> str:
    """/etc/nodeimage-release: KEY=value lines; nothing time- or host-specific."""
    pairs = [
        ("NODEIMAGE_VERSION", __version__),
        ("PROFILE", config.profile.name),
        ("STACK", config.stack.name),
        ("ARCH", config.profile.arch),
        ("BASE_DISTRO", config.distro.name),
        ("BASE_RELEASE", config.release.codename),
        ("KUBERNETES_VERSION", config.profile.kubernetes.version),
        ("CNI", config.cni.name),
    ]
    for e in sorted(config.components(), key=lambda e: e.name):
        pairs.append((re.sub(r"[^A-Z0-9]", "_", e.name.upper()) + "_VERSION", e.version))
    pairs.append(("LOCK_SHA256", config.lock_sha256))
    # The fields of image-builder's /etc/image-builder-release (images/capi/ansible/roles/node/tasks/main.yml,
    # kubernetes-sigs/image-builder main@ae63061), so tools that read an image's Kubernetes version there find it
    # here too: KUBERNETES_VERSION above; the builder's version; its commit (image-builder fills it for Azure
    # only: empty here); the build date, which is the build's SOURCE_DATE_EPOCH (nothing time-specific).
    pairs.append(("IMAGE_BUILDER_VERSION", f"nodeimage-{__version__}"))
    pairs.append(("IMAGE_BUILDER_COMMIT", ""))
    pairs.append(("BUILD_DATE", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(config.epoch))))
    for key, value in pairs:
        if value and not _TOKEN.match(value):
            die(f"value for {key} in {RELEASE_FILE} is not a plain token: {value!r}")
    return "".join(f"{k}={v}\n" for k, v in pairs)


def node_files(config: BuildConfig, files: dict[str, Path]) -> list[File]:
    manifest = cni_manifest(config, files[config.cni.artifact])
    stack_data = {
        "stack": config.stack.name,
        "kubernetes_version": config.profile.kubernetes.version,
        "runtime_class": config.stack.runtime_class(),
        # What first boot runs (as root) to decide whether this node may run Kata pods.
        "kata_check": list(config.stack.kata_check),
        "cni": {
            "name": config.cni.name,
            "manifest": f"{SHARE}/cni-manifest.json",
            "pod_cidr": config.cni.patch.as_dict(),
        },
    }
    return [
        File("/usr/local/sbin/nodeimage-bootstrap", BOOTSTRAP_PROGRAM.read_text(), 0o755),
        File(f"/etc/systemd/system/{BOOTSTRAP_UNIT}", (PROVISION_FILES / BOOTSTRAP_UNIT).read_text()),
        File(f"{SHARE}/stack.json", json.dumps(stack_data, indent=2, sort_keys=True) + "\n"),
        File(f"{SHARE}/cni-manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n"),
        File(f"{SHARE}/build.json", json.dumps(build_record(config), indent=2, sort_keys=True) + "\n"),
        File(RELEASE_FILE, release_file(config)),
    ]


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def write_stage(config: BuildConfig, files: dict[str, Path], stage: Path) -> Path:
    """Lay out the stage directory for ``config`` from the verified artifact ``files``; return it."""
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    shutil.copy2(PROVISION_DIR / "lib.sh", stage / "lib.sh")
    (stage / "build.env").write_text(build_env(config))
    for layer in LAYERS:
        _copy_steps(stage, layer)
        (stage / layer / "rootfs").mkdir()

    os_dir = stage / "os"
    (os_dir / "packages.txt").write_text("".join(f"{p}\n" for p in packages(config)))
    _write_files(os_dir, os_files(config))

    stack_dir = stage / "stack"
    (stack_dir / "artifacts").mkdir()
    for e in config.components():
        _link_or_copy(files[e.name], stack_dir / "artifacts" / e.filename)
    for algorithm, lines in checksum_lines(config).items():
        (stack_dir / f"checksums.{algorithm}").write_text("".join(f"{line}\n" for line in lines))
    (stack_dir / "install.tsv").write_text("".join(f"{line}\n" for line in install_lines(config)))
    settings = config.settings()
    (stack_dir / "directories.txt").write_text("".join(f"{d}\n" for d in config.stack.directories(settings)))
    (stack_dir / "units.txt").write_text("".join(f"{u}\n" for u in config.stack.units))
    # What the build bakes into the stack layer's containers-storage (part of that layer's cache key).
    (stack_dir / "images.txt").write_text("".join(f"{i.ref} {i.platform} {i.digest}\n" for i in config.images))
    _write_files(stack_dir, config.stack.files(settings))

    _write_files(stage / "node", node_files(config, files))
    (stage / "node" / "units.txt").write_text(f"{BOOTSTRAP_UNIT}\n")
    return stage


def stage_digest(stage: Path, layer: str) -> str:
    """A digest of one layer's stage (its steps, files and artifacts) plus lib.sh and build.env."""
    import hashlib

    h = hashlib.sha256()
    for path in [stage / "lib.sh", stage / "build.env"] + sorted(p for p in (stage / layer).rglob("*")):
        rel = path.relative_to(stage).as_posix()
        if path.is_symlink():
            h.update(f"L {rel} {os.readlink(path)}\0".encode())
        elif path.is_file():
            h.update(f"F {rel} {path.stat().st_mode & 0o7777:o} {file_sha256(path)}\0".encode())
        elif path.is_dir():
            h.update(f"D {rel}\0".encode())
    return h.hexdigest()
