"""`invoke build`: profile + lock → verified inputs → packer → image, suite, manifest.

Phases are timed and recorded in build-manifest.json. Nothing appears under
build/<profile>/ until every phase (the image suite included) succeeded; a
failed or interrupted build leaves only its work directory's removal behind.
A build whose inputs did not change since the last one is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from nodeimage import __version__, accel, packer
from nodeimage import fetch as fetchmod
from nodeimage.disk import normalise_image
from nodeimage.fsutil import atomic_write, file_sha256
from nodeimage.lock import DEFAULT_LOCK, Lock, LockEntry, load_lock, lock_sha256
from nodeimage.log import die, info, step, warn
from nodeimage.ova import write_profile_ova
from nodeimage.profiles import Profile, load_profile, parse_formats
from nodeimage.sbom import write_sbom
from nodeimage.scrub import scrub_shutdown_residue
from nodeimage.sshkey import generate_keypair
from nodeimage.suite import run_image_suite, run_tree_suite, sudo_user_data

REPO_ROOT = Path(__file__).resolve().parent.parent
PROVISION_DIR = REPO_ROOT / "provision"
BUILD_USER = "nodeimage-build"
MANIFEST_NAME = "build-manifest.json"
IMAGE_NAME = "node.qcow2"


@dataclass
class BuildState:
    """What changes during a build, kept apart from the (frozen) configuration."""

    phases: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str, title: str) -> Iterator[None]:
        start = time.monotonic()
        with step(title):
            yield
        self.phases[name] = round(time.monotonic() - start, 1)


def provision_scripts() -> list[Path]:
    scripts = sorted(PROVISION_DIR.glob("[0-9][0-9]-*.sh"))
    if not scripts:
        die(f"no provision scripts found in {PROVISION_DIR}")
    return scripts


def wanted_artifacts(profile: Profile) -> dict[str, str | None]:
    wanted: dict[str, str | None] = dict(profile.components)
    if profile.base.source == "cloud-image" and profile.base.artifact:
        wanted[profile.base.artifact] = None
    return wanted


def _hash_tree(h: hashlib._Hash, root: Path) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())


def input_digest(profile: Profile, entries: Sequence[LockEntry], formats: Sequence[str], suite: bool) -> str:
    """One digest over everything that decides the image's content."""
    h = hashlib.sha256()
    h.update(f"nodeimage {__version__}\0formats {','.join(formats)}\0suite {suite}\0".encode())
    h.update(profile.path.read_bytes())
    for e in entries:
        h.update(f"{e.name}\0{e.version}\0{e.arch}\0{e.url}\0{e.checksum}\0".encode())
    for sub in (PROVISION_DIR, REPO_ROOT / "packer", REPO_ROOT / "nodeimage"):
        _hash_tree(h, sub)
    return h.hexdigest()


def up_to_date(out_dir: Path, digest: str) -> bool:
    """The last build had the same inputs and its outputs are still there, at their recorded sizes."""
    try:
        manifest = json.loads((out_dir / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("input_digest") != digest:
        return False
    for out in manifest.get("outputs", []):
        path = out_dir / out["path"]
        if not path.is_file() or path.stat().st_size != out["size"]:
            return False
    return True


def build_seed_files(workdir: Path, public_key: str) -> list[Path]:
    """The build-time NoCloud seed: a sudo build user reachable with a throwaway key, nothing else."""
    seed = workdir / "seed"
    seed.mkdir()
    (seed / "user-data").write_text(sudo_user_data(BUILD_USER, public_key))
    (seed / "meta-data").write_text(f"instance-id: {BUILD_USER}\nlocal-hostname: {BUILD_USER}\n")
    return [seed / "user-data", seed / "meta-data"]


def build_json(profile: Profile, entries: Sequence[LockEntry], lock_path: Path) -> dict[str, object]:
    """What the provision scripts read inside the VM ($NODEIMAGE_STAGE/build.json)."""
    components = {
        e.name: {"version": e.version, "file": f"artifacts/{e.filename}", "checksum": e.checksum}
        for e in entries
        if e.name in profile.components
    }
    return {
        "profile": profile.name,
        "arch": profile.arch,
        "base": {"distro": profile.base.distro, "release": profile.base.release},
        "kubernetes": {
            "version": profile.kubernetes.version,
            "pod_cidr": profile.kubernetes.pod_cidr,
            "service_cidr": profile.kubernetes.service_cidr,
        },
        "components": components,
        "nodeimage_version": __version__,
        "lock_sha256": lock_sha256(lock_path),
    }


def stage_inputs(stage: Path, files: dict[str, Path], entries: Sequence[LockEntry], data: dict[str, object]) -> None:
    """Lay out what packer uploads to /var/tmp/nodeimage: artifacts/, build.json, files/, lib.sh."""
    (stage / "artifacts").mkdir(parents=True)
    for e in entries:
        if e.name not in data["components"]:  # type: ignore[operator]
            continue
        target = stage / "artifacts" / e.filename
        try:
            os.link(files[e.name], target)
        except OSError:
            shutil.copy2(files[e.name], target)
    (stage / "build.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    if (PROVISION_DIR / "files").is_dir():
        shutil.copytree(PROVISION_DIR / "files", stage / "files")
    shutil.copy2(PROVISION_DIR / "lib.sh", stage / "lib.sh")


def resolve_base(profile: Profile, files: dict[str, Path], out_root: Path) -> Path:
    if profile.base.source == "cloud-image":
        assert profile.base.artifact
        return files[profile.base.artifact]
    from nodeimage.base import build_base

    assert profile.base.mirror
    return build_base(
        distro=profile.base.distro,
        release=profile.base.release,
        mirror=profile.base.mirror,
        arch=profile.arch,
        out_dir=out_root / "base",
    )


def build(
    profile_name: str,
    *,
    lock_file: Path | None = None,
    mirror: str | None = None,
    formats: str | None = None,
    out_root: Path = Path("build"),
    run_suite: bool = True,
    suite_args: Sequence[str] = (),
    force: bool = False,
) -> Path:
    """Build the profile's image into out_root/<profile>/; return that directory."""
    started = time.monotonic()
    state = BuildState()
    profile = load_profile(profile_name)
    lock_path = Path(lock_file) if lock_file else DEFAULT_LOCK
    lock: Lock = load_lock(lock_path)
    wanted = wanted_artifacts(profile)
    entries = lock.select(wanted, profile.arch)
    fmts = parse_formats(formats) if formats else profile.formats
    out_dir = out_root / profile.name
    if not run_suite:
        warn("the image suite is skipped (--skip-suite): the image is not checked")

    if all(e.checksum for e in entries) and not force:
        digest = input_digest(profile, entries, fmts, run_suite)
        if up_to_date(out_dir, digest):
            info(f"{out_dir}: up to date (inputs unchanged since the last build; --force rebuilds)")
            return out_dir

    packer_info = packer.find_packer()
    with state.phase("fetch", f"fetching {len(entries)} artifacts"):
        files = fetchmod.fetch(entries, mirror=mirror, lock_path=lock_path)
    lock = load_lock(lock_path)  # trust-on-first-use may have recorded digests
    entries = lock.select(wanted, profile.arch)
    digest = input_digest(profile, entries, fmts, run_suite)

    with state.phase("base", f"base image ({profile.base.source}: {profile.base.distro} {profile.base.release})"):
        base_image = resolve_base(profile, files, out_root)

    with state.phase("probe", "probing the accelerator"):
        report = accel.probe()
        (info if report.kvm_usable else warn)(f"accelerator: {report.accelerator} ({report.reason})")

    out_root.mkdir(parents=True, exist_ok=True)
    work = Path(out_root) / f".work-{profile.name}-{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:

        def on_tree(tree: Path) -> None:
            """The normalise step's file tree: scrub shutdown residue, then run the un-booted suite on it."""
            scrub_shutdown_residue(tree)
            if run_suite:
                run_tree_suite(tree, profile=profile.name, extra_args=suite_args)

        image = _packer_build(
            profile, packer_info, report.accelerator, base_image, files, entries, lock_path, work, state, on_tree
        )
        outputs = {"qcow2": image}
        epoch = source_date_epoch(lock_path)
        with state.phase("sbom", "writing the SBOM (SPDX: installed packages and lock artifacts)"):
            sbom = work / "final" / "node.spdx.json"
            write_sbom(image, entries, sbom, profile=profile.name, epoch=epoch)
            outputs["spdx-json"] = sbom
        if "ova" in fmts:
            with state.phase("ova", "writing the OVA"):
                ova = work / "final" / "node.ova"
                write_profile_ova(image, ova, profile, epoch=epoch)
                outputs["ova"] = ova
        if run_suite:
            with state.phase("suite", "image suite"):
                run_image_suite(
                    image,
                    profile=profile.name,
                    accel=report.accelerator,
                    workdir=work / "suite",
                    extra_args=suite_args,
                    cpus=profile.vm.cpus,
                    memory_mib=profile.vm.memory_mib,
                )
        publish(out_dir, outputs, profile, entries, packer_info, report, state, digest, started, run_suite)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir


def source_date_epoch(lock_path: Path) -> int:
    """SOURCE_DATE_EPOCH for everything a build writes: fixed, from the environment or 2021-01-01."""
    return int(os.environ.get("SOURCE_DATE_EPOCH", "1609459200"))


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
    scripts: Sequence[Path] | None = None,
    ssh_timeout: str = "20m",
) -> dict[str, object]:
    """The variable file for packer/node.pkr.hcl; every path absolute, outputs inside ``work``."""
    return {
        "base_image": str(base_image.resolve()),
        "base_checksum": "sha256:" + file_sha256(base_image),
        "output_directory": str((work / "packer-out").resolve()),
        "vm_name": IMAGE_NAME,
        "accelerator": accelerator,
        "cpus": cpus,
        "memory": memory_mib,
        "disk_size": f"{disk_gib}G",
        "seed_files": [str(p.resolve()) for p in seed_files],
        "ssh_username": BUILD_USER,
        "ssh_private_key_file": str(key.resolve()),
        "ssh_timeout": ssh_timeout,
        "stage_dir": str(stage.resolve()),
        "scripts": [str(p) for p in (scripts if scripts is not None else provision_scripts())],
        "serial_log": str((work / "serial.log").resolve()),
        "manifest_path": str((work / "packer-manifest.json").resolve()),
    }


def _packer_build(
    profile: Profile,
    packer_info: packer.PackerInfo,
    accelerator: str,
    base_image: Path,
    files: dict[str, Path],
    entries: Sequence[LockEntry],
    lock_path: Path,
    work: Path,
    state: BuildState,
    on_tree: Callable[[Path], None],
) -> Path:
    with state.phase("stage", "staging inputs for packer"):
        stage = work / "stage"
        stage_inputs(stage, files, entries, build_json(profile, entries, lock_path))
        key = work / "build_key"
        public = generate_keypair(key, comment="nodeimage-build")
        seed_files = build_seed_files(work, public)
        template = packer.prepare_template(packer_info, work)
        variables = packer_variables(
            base_image=base_image,
            work=work,
            accelerator=accelerator,
            cpus=profile.vm.cpus,
            memory_mib=profile.vm.memory_mib,
            disk_gib=profile.vm.disk_gib,
            seed_files=seed_files,
            key=key,
            stage=stage,
        )
        var_file = work / "variables.json"
        var_file.write_text(json.dumps(variables, indent=2))
        packer.validate(packer_info, template, var_file, work)
    with state.phase("packer", f"packer {packer_info.version_str} build ({accelerator})"):
        packer.build(packer_info, template, var_file, workdir=work, serial_log=work / "serial.log")
        packer.read_manifest(work / "packer-manifest.json")
    raw_image = work / "packer-out" / IMAGE_NAME
    if not raw_image.is_file():
        die(f"packer finished but left no image at {raw_image}")
    final = work / "final"
    final.mkdir()
    title = "normalising the image (its filesystem rebuilt from its file tree; the un-booted suite runs on the tree)"
    with state.phase("normalise", title):
        image = final / IMAGE_NAME
        normalise_image(raw_image, image, epoch=source_date_epoch(lock_path), prepare=on_tree)
    return image


def publish(
    out_dir: Path,
    outputs: dict[str, Path],
    profile: Profile,
    entries: Sequence[LockEntry],
    packer_info: packer.PackerInfo,
    report: accel.AccelReport,
    state: BuildState,
    digest: str,
    started: float,
    suite_ran: bool,
) -> None:
    """Move outputs into out_dir (each atomically) and write the manifest last."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # a half-updated dir never looks up to date
    records = []
    for fmt, path in outputs.items():
        target = out_dir / path.name
        records.append({"path": path.name, "format": fmt, "sha256": file_sha256(path), "size": path.stat().st_size})
        os.replace(path, target)
    manifest = {
        "nodeimage_version": __version__,
        "profile": profile.name,
        "arch": profile.arch,
        "input_digest": digest,
        "inputs": [
            {"name": e.name, "version": e.version, "url": e.url, "checksum": e.checksum, "size": e.size}
            for e in entries
        ],
        "base": {"source": profile.base.source, "distro": profile.base.distro, "release": profile.base.release},
        "packer_version": packer_info.version_str,
        "accelerator": report.accelerator,
        "accelerator_reason": report.reason,
        "image_suite": "passed" if suite_ran else "skipped",
        "phases": {**state.phases, "total": round(time.monotonic() - started, 1)},
        # this process only: qemu and packer are children and not counted
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "outputs": records,
    }
    atomic_write(out_dir / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for r in records:
        info(f"{out_dir / r['path']}: {r['size'] / 2**20:.0f} MiB, sha256 {r['sha256']}")
