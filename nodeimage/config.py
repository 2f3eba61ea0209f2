"""One build configuration: made once from the profile, the lock, the formats, the epoch and the paths.

Everything a build decides from its inputs is decided here, before anything
is downloaded or booted, and checked: an unknown release or arch, an artifact or
container image without a digest in the lock, a bad SOURCE_DATE_EPOCH, an output directory that cannot be
written each fail in seconds with one message. The configuration is frozen;
what changes while a build runs lives in ``build.BuildState``. The input
digest (is the last build up to date?) is computed from it alone.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nodeimage import __version__, distros, stacks
from nodeimage import cni as cni_units
from nodeimage.cni import Cni
from nodeimage.distros import Distro, Release
from nodeimage.formats import Format, resolve
from nodeimage.fsutil import check_writable_dir
from nodeimage.lock import ImageEntry, Lock, LockEntry, load_lock, lock_sha256
from nodeimage.log import debug_enabled, die
from nodeimage.paths import DEFAULT_LOCK, PACKER_DIR, PROVISION_DIR, REPO_ROOT
from nodeimage.profiles import Profile, load_profile, parse_formats
from nodeimage.stacks import Settings, Stack

DEFAULT_EPOCH = 1609459200  # 2021-01-01T00:00:00Z, when SOURCE_DATE_EPOCH is not set
MAX_EPOCH = 2**32 - 1  # ext4 inode times and tar headers


@dataclass(frozen=True)
class BuildConfig:
    """What one build is: frozen, validated, the only input of the pipeline."""

    profile: Profile
    stack: Stack
    distro: Distro
    release: Release
    cni: Cni
    lock: Lock
    lock_sha256: str
    entries: tuple[LockEntry, ...]  # the profile's artifacts (components and base image), for its arch
    images: tuple[ImageEntry, ...]  # every container image the node runs, pinned by digest for its platform
    formats: tuple[Format, ...]
    epoch: int
    mirror: str | None
    registry_mirror: str | None
    out_root: Path
    run_suite: bool = True
    suite_args: tuple[str, ...] = ()
    debug: bool = False

    @property
    def out_dir(self) -> Path:
        return self.out_root / self.profile.name

    @property
    def format_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.formats)

    def entry(self, name: str) -> LockEntry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(name)

    def components(self) -> list[LockEntry]:
        """The lock entries installed into the image (the base image is not one)."""
        return [e for e in self.entries if e.name in self.profile.components]

    def settings(self) -> Settings:
        return Settings(
            kubernetes_version=self.profile.kubernetes.version,
            image_repository=self.profile.kubernetes.image_repository,
            arch=self.profile.arch,
            versions={e.name: e.version for e in self.components()},
        )

    def input_digest(self) -> str:
        """One digest over everything that decides the outputs' content (and the suite's verdict)."""
        h = hashlib.sha256()
        fields = (
            f"nodeimage {__version__}",
            f"formats {','.join(self.format_names)}",
            f"suite {self.run_suite} {' '.join(self.suite_args)}",
            f"epoch {self.epoch}",
        )
        h.update("\0".join(fields).encode() + b"\0")
        h.update(self.profile.path.read_bytes())
        for e in self.entries:
            h.update(f"{e.name}\0{e.version}\0{e.arch}\0{e.url}\0{e.checksum}\0".encode())
        for i in self.images:
            h.update(f"image {i.ref}\0{i.platform}\0{i.digest}\0".encode())
        for sub in (PROVISION_DIR, PACKER_DIR, REPO_ROOT / "nodeimage"):
            _hash_tree(h, sub)
        return h.hexdigest()


def _hash_tree(h: hashlib._Hash, root: Path) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())


def parse_epoch(value: str | None) -> int:
    """SOURCE_DATE_EPOCH as given in the environment (None or empty: the default)."""
    if value is None or value == "":
        return DEFAULT_EPOCH
    if not value.isdigit() or int(value) > MAX_EPOCH:
        die(
            f"SOURCE_DATE_EPOCH is not a Unix time nodeimage can use: {value!r}",
            hint=f"set it to whole seconds from 0 to {MAX_EPOCH}, e.g. 1609459200 (2021-01-01), or unset it",
        )
    return int(value)


def platform_of(arch: str) -> str:
    return f"linux/{arch}"


def required_images(prof: Profile, stack: Stack, cni: Cni, settings: Settings) -> list[str]:
    """What a node of ``prof`` runs at first boot: kubeadm's images for the stack (with the profile's image
    repository), the CNI's, then the profile's images.extra; in that order, without duplicates."""
    version = settings.versions[cni.artifact]
    refs = [*stack.images(settings), *cni.expected_images(version, prof.cni.image_repository), *prof.extra_images]
    return list(dict.fromkeys(refs))


def settings_of(prof: Profile, entries: Sequence[LockEntry]) -> Settings:
    """The stack's inputs: the profile's Kubernetes settings and the locked versions of its components."""
    return Settings(
        kubernetes_version=prof.kubernetes.version,
        image_repository=prof.kubernetes.image_repository,
        arch=prof.arch,
        versions={e.name: e.version for e in entries if e.name in prof.components},
    )


def profile_images(prof: Profile, lock: Lock) -> tuple[str, list[str]]:
    """The platform and the container image references a node of ``prof`` needs (for `invoke lock --profile`)."""
    entries = lock.select(prof.wanted(), prof.arch)
    stack, cni = stacks.get(prof.stack), cni_units.get(prof.cni.name)
    return platform_of(prof.arch), required_images(prof, stack, cni, settings_of(prof, entries))


def make_config(
    profile: str | Profile,
    *,
    lock_file: Path | None = None,
    mirror: str | None = None,
    registry_mirror: str | None = None,
    formats: str | None = None,
    out_root: Path = Path("build"),
    run_suite: bool = True,
    suite_args: tuple[str, ...] = (),
    epoch: str | None = None,
) -> BuildConfig:
    """Validate every input of a build and freeze it; nothing is downloaded or written but a write test."""
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    distro = distros.get(prof.base.distro)
    lock_path = Path(lock_file) if lock_file else DEFAULT_LOCK
    lock = load_lock(lock_path)
    entries = tuple(lock.select(prof.wanted(), prof.arch))
    missing = [e for e in entries if not e.checksum]
    if missing:
        die(
            f"{lock_path} has no digest for {', '.join(e.label for e in missing)}: a build only installs what the "
            "lock pins",
            hint=f"record it once with `.venv/bin/invoke lock --profile {prof.name}` (trust on first use for "
            "artifacts without a published digest), review the change, then build",
        )
    if mirror:
        from nodeimage.fetch import check_mirror

        check_mirror(mirror)
    if registry_mirror:
        from nodeimage.images import check_registry_mirror

        check_registry_mirror(registry_mirror)
    stack = stacks.get(prof.stack)
    cni = cni_units.get(prof.cni.name)
    settings = settings_of(prof, entries)
    images = tuple(lock.image(ref, platform_of(prof.arch)) for ref in required_images(prof, stack, cni, settings))
    unpinned = [i.ref for i in images if not i.digest]
    if unpinned:
        die(
            f"{lock_path} has no digest for the container images {', '.join(unpinned)}: a build never follows a tag",
            hint=f"record them once with `.venv/bin/invoke lock --profile {prof.name}` (trust on first use: the "
            "digest a registry serves now), review the change, then build",
        )
    fmt_names = parse_formats(formats) if formats else prof.formats
    config = BuildConfig(
        profile=prof,
        stack=stack,
        distro=distro,
        release=distro.release(prof.base.release),
        cni=cni,
        lock=lock,
        lock_sha256=lock_sha256(lock_path),
        entries=entries,
        images=images,
        formats=resolve(fmt_names),
        epoch=parse_epoch(os.environ.get("SOURCE_DATE_EPOCH") if epoch is None else epoch),
        mirror=mirror,
        registry_mirror=registry_mirror,
        out_root=Path(out_root),
        run_suite=run_suite,
        suite_args=tuple(suite_args),
        debug=debug_enabled(),
    )
    check_writable_dir(config.out_root, "output directory", output_root=True)
    return config
