"""`invoke build`: configuration → verified inputs → layers → image, formats, suite, manifest.

Phases are timed and recorded in build-manifest.json. Nothing appears under
build/<profile>/ until every phase (the image suite included) succeeded; a
failed or interrupted build leaves only its work directory's removal behind.
A build whose inputs did not change since the last one, and whose outputs are
untouched, is a no-op. Two builds of one profile into one directory never run
at once: the second waits for the first.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from nodeimage import __version__, accel, generalise, packer
from nodeimage import fetch as fetchmod
from nodeimage.config import BuildConfig, make_config
from nodeimage.disk.normalise import is_gpt, open_tree
from nodeimage.fsutil import atomic_write, file_sha256, held_exclusively, remove_work_dir
from nodeimage.images import bake, check_registry_mirror, stage_images
from nodeimage.layercache import LayerCache
from nodeimage.layers import layer_keys, run_chroot_layers, run_os_layer
from nodeimage.log import info, output, step, warn
from nodeimage.stage import write_stage
from nodeimage.suite import run_image_suite, run_tree_suite

MANIFEST_NAME = "build-manifest.json"
# What the no-op check compares besides the input digest: each output's size, mtime and inode.
STATE_NAME = ".nodeimage-build-state.json"
IMAGE_NAME = "node.qcow2"


@dataclass
class BuildState:
    """What changes during a build, kept apart from the (frozen) configuration."""

    phases: dict[str, float] = field(default_factory=dict)
    accel: accel.AccelReport | None = None
    layers: dict[str, str] = field(default_factory=dict)  # layer -> the key its result was made (or reused) under

    @contextmanager
    def phase(self, name: str, title: str) -> Iterator[None]:
        start = time.monotonic()
        with step(title):
            yield
        self.phases[name] = round(time.monotonic() - start, 1)


def _stat(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def up_to_date(out_dir: Path, digest: str) -> bool:
    """The last build had the same inputs, and every output is the very file it wrote (size, mtime, inode).

    Anything that rewrote an output, even at the same size, changes its mtime
    or its inode: the build then runs again rather than trusting the file.
    """
    try:
        manifest = json.loads((out_dir / MANIFEST_NAME).read_text())
        state = json.loads((out_dir / STATE_NAME).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("input_digest") != digest or state.get("input_digest") != digest:
        return False
    recorded = state.get("outputs", {})
    for out in manifest.get("outputs", []):
        path = out_dir / out["path"]
        try:
            if not path.is_file() or _stat(path) != recorded.get(out["path"]) or out["size"] != path.stat().st_size:
                return False
        except OSError:
            return False
    return True


def exclusive(config: BuildConfig) -> contextlib.AbstractContextManager[None]:
    """One build of a profile into an output directory at a time; the second waits for the first."""
    name, root = config.profile.name, config.out_root
    return held_exclusively(
        root / f".{name}.build.lock", lambda: info(f"another build of {name} into {root} is running; waiting for it")
    )


def remove_stale_work_dirs(config: BuildConfig) -> None:
    """Remove what killed builds of this profile left (their process is gone; we hold the profile's lock)."""
    from nodeimage.outputs import WORK_RE
    from nodeimage.procs import is_running

    for work in config.out_root.glob(f".work-{config.profile.name}-*"):
        match = WORK_RE.match(work.name)
        if match and match["profile"] == config.profile.name and not is_running(int(match["pid"])):
            info(f"removing {work}, left by a build that did not finish (pid {match['pid']} is gone)")
            remove_work_dir(work)


def resolve_base(config: BuildConfig, files: dict[str, Path]) -> Path:
    base = config.profile.base
    if base.source == "cloud-image":
        assert base.artifact
        return files[base.artifact]
    from nodeimage.base import build_base

    assert base.mirror
    return build_base(
        distro=base.distro,
        release=base.release,
        mirror=base.mirror,
        arch=config.profile.arch,
        out_dir=config.out_root / "base",
    )


def build(
    profile_name: str,
    *,
    lock_file: Path | None = None,
    mirror: str | None = None,
    registry_mirror: str | None = None,
    formats: str | None = None,
    out_root: Path = Path("build"),
    run_suite: bool = True,
    suite_args: Sequence[str] = (),
    force: bool = False,
) -> Path:
    """Build the profile's image into out_root/<profile>/; return that directory."""
    started = time.monotonic()
    state = BuildState()
    with step("checking the build configuration"):
        config = make_config(
            profile_name,
            lock_file=lock_file,
            mirror=mirror,
            registry_mirror=registry_mirror,
            formats=formats,
            out_root=out_root,
            run_suite=run_suite,
            suite_args=tuple(suite_args),
        )
    if not run_suite:
        warn("the image suite is skipped (--skip-suite): the image is not checked")
    digest = config.input_digest()
    if not force and up_to_date(config.out_dir, digest):
        info(f"{config.out_dir}: up to date (inputs and outputs unchanged since the last build; --force rebuilds)")
        return config.out_dir
    packer_info = packer.find_packer()
    with exclusive(config):
        remove_stale_work_dirs(config)
        if not force and up_to_date(config.out_dir, digest):  # another build of these inputs finished meanwhile
            info(f"{config.out_dir}: up to date (the build this one waited for made it)")
            return config.out_dir
        work = config.out_root / f".work-{config.profile.name}-{os.getpid()}"
        if work.exists():
            remove_work_dir(work)
        work.mkdir(parents=True)
        try:
            _build(config, state, packer_info, work, force)
            publish(config, work / "final", state, digest, started, packer_info)
        finally:
            remove_work_dir(work)
    return config.out_dir


def _build(config: BuildConfig, state: BuildState, packer_info: packer.PackerInfo, work: Path, force: bool) -> None:
    cache = LayerCache.default()
    with state.phase("fetch", f"fetching {len(config.entries)} artifacts"):
        files = fetchmod.fetch(config.entries, mirror=config.mirror)
    with state.phase("images", f"copying and checking {len(config.images)} container images"):
        mirror = check_registry_mirror(config.registry_mirror) if config.registry_mirror else None
        staged = stage_images(config.images, cache.root.parent / "images", mirror)
    base = f"{config.profile.base.source}: {config.distro.name} {config.release.codename}"
    with state.phase("base", f"base image ({base})"):
        base_image = resolve_base(config, files)
        base_sha256 = file_sha256(base_image)
    with state.phase("stage", "staging the layers' files"):
        stage = write_stage(config, files, work / "stage")
        keys = layer_keys(config, stage, base_sha256)
    vm_disk = None if force else cache.get("os", keys.os)
    if vm_disk is None:
        with state.phase("probe", "probing the accelerator"):
            state.accel = accel.probe()
            (info if state.accel.kvm_usable else warn)(f"accelerator: {state.accel.accelerator} ({state.accel.reason})")
        with state.phase("packer", f"OS layer: packer {packer_info.version_str} build ({state.accel.accelerator})"):
            fresh = run_os_layer(
                config,
                packer_info=packer_info,
                accelerator=state.accel.accelerator,
                base_image=base_image,
                base_sha256=base_sha256,
                stage=stage,
                work=work,
            )
            vm_disk = cache.put_file("os", keys.os, fresh)
    state.layers["os"] = keys.os
    final = work / "final"
    final.mkdir()
    image = final / IMAGE_NAME
    stack_entry = None if force or is_gpt(vm_disk) else cache.get("stack", keys.stack)
    fill = (lambda tree: cache.restore_tree(stack_entry, tree)) if stack_entry else None
    title = "normalising: stack and node layers, generalisation and the un-booted suite on the image tree"
    with state.phase("normalise", title), open_tree(
        vm_disk, image, epoch=config.epoch, kernel_args=config.stack.kernel_args(), scratch=work, fill=fill
    ) as tree:
        if stack_entry is None:
            run_chroot_layers(tree, stage, ["stack"])
            with state.phase("bake", f"baking {len(config.images)} container images into the image"):
                bake(tree, config.images, staged, epoch=config.epoch)
            if not is_gpt(vm_disk):
                cache.put_tree("stack", keys.stack, tree)
        state.layers["stack"] = keys.stack
        run_chroot_layers(tree, stage, ["node"])
        state.layers["node"] = keys.node
        generalise.apply(tree, generalise.rules_for(config.distro.generalise_remove, config.distro.generalise_truncate))
        if config.run_suite:
            run_tree_suite(tree, profile=config.profile.name, extra_args=config.suite_args, lock_path=config.lock.path)
    if vm_disk.parent == work / "packer-out":
        vm_disk.unlink()
    written = {"qcow2": image}
    for fmt in config.formats:
        if fmt.name == "qcow2":
            continue
        with state.phase(fmt.name, f"writing {fmt.filename} ({fmt.description})"):
            out = final / fmt.filename
            fmt.write(config, written, out)
            written[fmt.name] = out
    if config.run_suite:
        if state.accel is None:
            with state.phase("probe", "probing the accelerator"):
                state.accel = accel.probe()
        with state.phase("suite", "image suite on a booted copy"):
            run_image_suite(
                image,
                profile=config.profile.name,
                accel=state.accel.accelerator,
                workdir=work / "suite",
                extra_args=config.suite_args,
                cpus=config.profile.vm.cpus,
                memory_mib=config.profile.vm.memory_mib,
                lock_path=config.lock.path,
            )


def publish(
    config: BuildConfig, final: Path, state: BuildState, digest: str, started: float, packer_info: packer.PackerInfo
) -> None:
    """Move outputs into the output directory (each atomically) and write the manifest last."""
    out_dir = config.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # a half-updated dir never looks up to date
    (out_dir / STATE_NAME).unlink(missing_ok=True)
    records = []
    stats = {}
    for fmt in config.formats:
        path = final / fmt.filename
        size = path.stat().st_size
        records.append({"path": fmt.filename, "format": fmt.name, "sha256": file_sha256(path), "size": size})
        os.replace(path, out_dir / fmt.filename)
        stats[fmt.filename] = _stat(out_dir / fmt.filename)
    report = state.accel
    manifest = {
        "nodeimage_version": __version__,
        "profile": config.profile.name,
        "stack": config.stack.name,
        "arch": config.profile.arch,
        "input_digest": digest,
        "source_date_epoch": config.epoch,
        "inputs": [
            {"name": e.name, "version": e.version, "url": e.url, "checksum": e.checksum, "size": e.size}
            for e in config.entries
        ],
        "base": {
            "source": config.profile.base.source,
            "distro": config.distro.name,
            "release": config.release.codename,
        },
        "packer_version": packer_info.version_str,
        "accelerator": report.accelerator if report else None,
        "accelerator_reason": report.reason if report else "no VM was booted: every layer came from the cache",
        "layers": state.layers,
        "image_suite": "passed" if config.run_suite else "skipped",
        "phases": {**state.phases, "total": round(time.monotonic() - started, 1)},
        # this process only: qemu and packer are children and not counted
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "images": [{"ref": i.ref, "platform": i.platform, "digest": i.digest, "size": i.size} for i in config.images],
        "outputs": records,
    }
    atomic_write(out_dir / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    atomic_write(out_dir / STATE_NAME, json.dumps({"input_digest": digest, "outputs": stats}, indent=2) + "\n")
    for r in records:
        output(out_dir / r["path"], format=r["format"], sha256=r["sha256"], size=r["size"])
