"""The provision layers: where each runs and how.

    os     distribution packages and kernel settings     packer, in the build VM (needs the
                                                          distribution's package manager and network)
    stack  CRI-O, kubelet/kubeadm/kubectl, Kata, CNI      chroot of the image tree (installs files)
           plugins, crictl, their configuration
    node   the first-boot program and its data,          chroot of the image tree, then
           /etc/nodeimage-release, generalisation         nodeimage.generalise on the tree

Only the OS layer boots a VM. The build VM is powered off before the stack
layer starts, so nothing it writes while shutting down can reach the image
after generalisation.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nodeimage import packer
from nodeimage.chroot import run_steps
from nodeimage.config import BuildConfig
from nodeimage.fsutil import file_sha256
from nodeimage.log import debug_enabled, die
from nodeimage.sshkey import generate_keypair
from nodeimage.suite import sudo_user_data

BUILD_USER = "nodeimage-build"
VM_IMAGE_NAME = "node.qcow2"


@dataclass(frozen=True)
class Layer:
    name: str
    where: str  # "vm" or "chroot"
    description: str


LAYERS = (
    Layer("os", "vm", "distribution packages and kernel settings (build VM)"),
    Layer("stack", "chroot", "container runtime, Kubernetes, Kata, CNI plugins and their configuration"),
    Layer("node", "chroot", "first-boot program, baked data, release file"),
)


def build_seed_files(workdir: Path, public_key: str) -> list[Path]:
    """The build-time NoCloud seed: a sudo build user reachable with a throwaway key, nothing else."""
    seed = workdir / "seed"
    seed.mkdir()
    (seed / "user-data").write_text(sudo_user_data(BUILD_USER, public_key))
    (seed / "meta-data").write_text(f"instance-id: {BUILD_USER}\nlocal-hostname: {BUILD_USER}\n")
    return [seed / "user-data", seed / "meta-data"]


def packer_variables(
    *,
    base_image: Path,
    work: Path,
    accelerator: str,
    cpus: int,
    memory_mib: int,
    disk_gib: int,
    seed_files: Sequence[Path],
    key: Path,
    stage: Path,
    scripts: Sequence[Path],
    ssh_timeout: str = "20m",
    base_checksum: str | None = None,
) -> dict[str, object]:
    """The variable file for packer/node.pkr.hcl; every path absolute, outputs inside ``work``."""
    return {
        "base_image": str(base_image.resolve()),
        "base_checksum": "sha256:" + (base_checksum or file_sha256(base_image)),
        "output_directory": str((work / "packer-out").resolve()),
        "vm_name": VM_IMAGE_NAME,
        "accelerator": accelerator,
        "cpus": cpus,
        "memory": memory_mib,
        "disk_size": f"{disk_gib}G",
        "seed_files": [str(p.resolve()) for p in seed_files],
        "ssh_username": BUILD_USER,
        "ssh_private_key_file": str(key.resolve()),
        "ssh_timeout": ssh_timeout,
        "stage_dir": str(stage.resolve()),
        "scripts": [str(p.resolve()) for p in scripts],
        "serial_log": str((work / "serial.log").resolve()),
        "manifest_path": str((work / "packer-manifest.json").resolve()),
        "debug": "1" if debug_enabled() else "",
    }


def vm_stage(stage: Path, dest: Path) -> Path:
    """What packer uploads for the OS layer: lib.sh, build.env and os/ (no artifacts: they are not needed there)."""
    dest.mkdir(parents=True)
    for name in ("lib.sh", "build.env"):
        shutil.copy2(stage / name, dest / name)
    shutil.copytree(stage / "os", dest / "os")
    return dest


def run_os_layer(
    config: BuildConfig,
    *,
    packer_info: packer.PackerInfo,
    accelerator: str,
    base_image: Path,
    base_sha256: str,
    stage: Path,
    work: Path,
) -> Path:
    """Boot the base image with packer, run the OS layer's steps, power off; return the VM's disk."""
    key = work / "build_key"
    public = generate_keypair(key, comment="nodeimage-build")
    upload = vm_stage(stage, work / "vm-stage")
    template = packer.prepare_template(packer_info, work)
    variables = packer_variables(
        base_image=base_image,
        work=work,
        accelerator=accelerator,
        cpus=config.profile.vm.cpus,
        memory_mib=config.profile.vm.memory_mib,
        disk_gib=config.profile.vm.disk_gib,
        seed_files=build_seed_files(work, public),
        key=key,
        stage=upload,
        scripts=sorted((upload / "os" / "steps").glob("[0-9][0-9]-*.sh")),
        base_checksum=base_sha256,
    )
    var_file = work / "variables.json"
    var_file.write_text(json.dumps(variables, indent=2))
    packer.validate(packer_info, template, var_file, work)
    packer.build(packer_info, template, var_file, workdir=work, serial_log=work / "serial.log")
    packer.read_manifest(work / "packer-manifest.json")
    image = work / "packer-out" / VM_IMAGE_NAME
    if not image.is_file():
        die(f"packer finished but left no image at {image}")
    return image


def run_chroot_layers(tree: Path, stage: Path, layers: Sequence[str] = ("stack", "node")) -> None:
    """Run the chroot layers' steps on the image tree, in order."""
    env = {"DEBUG": "1"} if debug_enabled() else {}
    for layer in layers:
        run_steps(tree, stage, layer, env=env)


# Bump when a change to how layers are made changes their result in a way their inputs do not show.
LAYER_FORMAT = 1


@dataclass(frozen=True)
class LayerKeys:
    """The cache keys: each layer's inputs and the previous layer's key."""

    os: str
    stack: str
    node: str


def layer_keys(config: BuildConfig, stage: Path, base_sha256: str) -> LayerKeys:
    """Keys from the staged inputs: a layer's steps, files, lists and artifacts, and what came before it."""
    from nodeimage.paths import PACKER_DIR
    from nodeimage.stage import stage_digest

    def key(*parts: str) -> str:
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    template = key(*(f"{p.name}:{file_sha256(p)}" for p in sorted(PACKER_DIR.glob("*.hcl"))))
    vm = config.profile.vm
    os_key = key(
        f"layers {LAYER_FORMAT}", "os", base_sha256, stage_digest(stage, "os"), template,
        f"{vm.cpus}/{vm.memory_mib}/{vm.disk_gib}",
    )  # fmt: skip
    stack_key = key(os_key, "stack", stage_digest(stage, "stack"))
    return LayerKeys(os=os_key, stack=stack_key, node=key(stack_key, "node", stage_digest(stage, "node")))
