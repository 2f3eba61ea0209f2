"""The image tasks: a base disk, the lock, fetching, building, checking and comparing node images."""

from __future__ import annotations

import os

from invoke import Context, Exit

from nodeimage.cli import int_option, task
from nodeimage.log import result


@task(
    help={
        "distro": "distribution to bootstrap: debian or ubuntu",
        "release": "release codename: bookworm (debian) or focal (ubuntu)",
        "mirror": "package mirror URL (http, https or file://), ideally a pinned snapshot",
        "arch": "Debian architecture name (only amd64: the disk boots with BIOS GRUB)",
        "out": "directory for <distro>-<release>-<arch>.qcow2 and its .json record",
        "epoch": "SOURCE_DATE_EPOCH for the build (default: the release's publication date)",
    }
)
def base(
    c: Context,
    distro: str = "debian",
    release: str = "bookworm",
    mirror: str = "http://deb.debian.org/debian",
    arch: str = "amd64",
    out: str = "build/base",
    epoch: str = "",
) -> None:
    """Build (or reuse) a cloud-init-ready base disk image from a package mirror with mmdebstrap."""
    from pathlib import Path

    from nodeimage.base import build_base
    from nodeimage.outputs import make_output_root

    make_output_root(Path(out).parent)  # build/ made here is nodeimage's: `invoke clean` may empty it
    image = build_base(
        distro=distro,
        release=release,
        mirror=mirror,
        arch=arch,
        out_dir=Path(out),
        epoch=int_option("epoch", epoch),
    )
    result(str(image), path=str(image))


@task(help={"build_dir": "where builds go (its free space is checked)"})
def doctor(c: Context, build_dir: str = "build") -> None:
    """Show packer/qemu versions, missing tools, free disk, and whether KVM really runs a guest."""
    from pathlib import Path

    from nodeimage import doctor as doc

    rows = doc.report(Path(build_dir))
    result(doc.render(rows))
    if not all(ok for _, _, ok in rows):
        raise Exit("doctor: some checks failed (see BAD lines)", code=1)


@task(
    help={
        "profile": "profile name (profiles/<name>.yaml) or path to a profile YAML; default k8s-1.17",
        "lock_file": "lock file to build from (default artifacts.lock.yaml)",
        "mirror": "directory or http(s) base URL that stands in for every upstream URL (<mirror>/<host>/<path>); "
        "also NODEIMAGE_MIRROR",
        "registry_mirror": "registry (http(s)://HOST[:PORT][/PREFIX]) or OCI-layout directory to copy the "
        "container images from instead of their registries (<mirror>/<registry>/<repository>); "
        "also NODEIMAGE_REGISTRY_MIRROR",
        "formats": "comma-separated output formats: qcow2 (always), ova, containerdisk (spdx-json is always "
        "written); default from the profile",
        "out": "output root; the image goes to <out>/<profile>/ (default build)",
        "skip_suite": "do not run the image acceptance suite on the result (not recommended)",
        "suite_args": "extra arguments for the image suite's pytest run, e.g. '--standins'",
        "force": "rebuild even if the inputs did not change",
    }
)
def build(
    c: Context,
    profile: str = "k8s-1.17",
    lock_file: str = "",
    mirror: str = "",
    registry_mirror: str = "",
    formats: str = "",
    out: str = "build",
    skip_suite: bool = False,
    suite_args: str = "",
    force: bool = False,
) -> None:
    """Build a golden node image (qcow2, optionally OVA) for a profile and check it with the image suite."""
    import shlex
    from pathlib import Path

    from nodeimage.build import build as run_build

    out_dir = run_build(
        profile,
        lock_file=Path(lock_file) if lock_file else None,
        mirror=mirror or os.environ.get("NODEIMAGE_MIRROR") or None,
        registry_mirror=registry_mirror or os.environ.get("NODEIMAGE_REGISTRY_MIRROR") or None,
        formats=formats or None,
        out_root=Path(out),
        run_suite=not skip_suite,
        suite_args=shlex.split(suite_args),
        force=force,
    )
    result(str(out_dir), path=str(out_dir))


@task(
    help={
        "out": "output root to remove builds from (default build); refused unless nodeimage created it",
        "cache": "also empty the download cache, the layer cache and the accelerator probe's cache",
    }
)
def clean(c: Context, out: str = "build", cache: bool = False) -> None:
    """Remove build outputs (never cluster secrets or files nodeimage did not make; --cache: the caches too)."""
    from pathlib import Path

    from nodeimage.fetch import cache_dir
    from nodeimage.log import info
    from nodeimage.outputs import clean_cache, clean_outputs
    from nodeimage.paths import DEFAULT_STATE_DIR

    report = clean_outputs(Path(out), state_dir=DEFAULT_STATE_DIR)
    for path in report.removed:
        result(f"removed {path}", removed=str(path))
    for path, why in report.kept:
        info(f"kept {path} ({why})")
    if not report.removed:
        info(f"no build outputs under {out}")
    if cache:
        for path in clean_cache(cache_dir()):
            result(f"removed {path}", removed=str(path))


@task(
    help={
        "image": "the qcow2 to package, e.g. build/k8s-1.17/node.qcow2",
        "out": "the OVA to write (default: the image path with .ova)",
        "profile": "profile whose vm: section gives the CPU and memory defaults and whose versions go into the OVF",
        "cpus": "virtual CPUs (default: the profile's vm.cpus)",
        "memory": "memory in MiB (default: the profile's vm.memory_mib)",
    }
)
def ova(c: Context, image: str, out: str = "", profile: str = "k8s-1.17", cpus: str = "", memory: str = "") -> None:
    """Package an existing qcow2 as a reproducible OVA."""
    from pathlib import Path

    from nodeimage.ova import ova_from_profile

    path = ova_from_profile(
        Path(image),
        profile_name=profile,
        out=Path(out) if out else None,
        cpus=int_option("cpus", cpus, minimum=1),
        memory_mib=int_option("memory", memory, minimum=256),
    )
    from nodeimage.fsutil import file_sha256
    from nodeimage.log import output

    output(path, format="ova", sha256=file_sha256(path), size=path.stat().st_size)
    result(str(path), path=str(path))


@task(
    help={
        "names": "comma-separated artifact names or image references to lock (default: every artifact, and "
        "every image of the lock or of --profile)",
        "profile": "lock only what this profile needs: its artifacts, and its container images (its stack's, its "
        "CNI's, images.extra), adding those the lock does not list yet",
        "mirror": "directory or http(s) base URL holding <mirror>/<host>/<path> copies of the upstream files "
        "(default: $NODEIMAGE_MIRROR, else upstream)",
        "registry_mirror": "where to ask for image digests instead of the images' registries: http(s)://HOST[/PREFIX] "
        "or an OCI-layout directory (default: $NODEIMAGE_REGISTRY_MIRROR)",
        "lock_file": "the lock file to complete (default artifacts.lock.yaml)",
        "refresh": "download (ask) again and compare: a changed digest is an error, except trust-on-first-use "
        "entries, whose new digest is recorded",
        "images_only": "lock container images only, no artifact downloads",
    }
)
def lock(
    c: Context,
    names: str = "",
    profile: str = "",
    mirror: str = "",
    registry_mirror: str = "",
    lock_file: str = "",
    refresh: bool = False,
    images_only: bool = False,
) -> None:
    """Record missing digests and sizes in the lock file (artifacts downloaded, images asked of their registry).

    Trust on first use where upstream publishes no digest: review the change to the lock before building.
    """
    import os
    from pathlib import Path

    from nodeimage.config import profile_images
    from nodeimage.fetch import lock as lock_artifacts
    from nodeimage.imagelock import lock_images
    from nodeimage.lock import DEFAULT_LOCK, load_lock
    from nodeimage.profiles import load_profile

    path = Path(lock_file) if lock_file else DEFAULT_LOCK
    current = load_lock(path)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    image_refs = [n for n in wanted if n in {i.ref for i in current.images} or "/" in n]
    artifact_names = [n for n in wanted if n not in image_refs]
    prof = load_profile(profile) if profile else None
    if not artifact_names and prof is not None:
        artifact_names = [n for n in prof.wanted() if n in current.names()]
    if (artifact_names or not wanted) and not images_only:
        lock_artifacts(path, names=artifact_names or None, mirror=mirror or None, refresh=refresh)
    if image_refs or not wanted:
        lock_images(
            path,
            refs=image_refs or None,
            profile_images=profile_images(prof, load_lock(path)) if prof else None,
            registry_mirror=registry_mirror or os.environ.get("NODEIMAGE_REGISTRY_MIRROR") or None,
            refresh=refresh,
        )


@task(
    help={
        "profile": "profile name (profiles/<name>.yaml) or path to a profile YAML; default k8s-1.17",
        "mirror": "directory or http(s) base URL holding <mirror>/<host>/<path> copies of the upstream files "
        "(default: $NODEIMAGE_MIRROR, else upstream)",
        "lock_file": "the lock file to fetch from (default artifacts.lock.yaml)",
    }
)
def fetch(c: Context, profile: str = "k8s-1.17", mirror: str = "", lock_file: str = "") -> None:
    """Download and verify a profile's artifacts into the cache ($NODEIMAGE_CACHE or ~/.cache/nodeimage)."""
    from pathlib import Path

    from nodeimage.fetch import fetch_profile
    from nodeimage.lock import DEFAULT_LOCK

    lock_path = Path(lock_file) if lock_file else DEFAULT_LOCK
    for name, path in fetch_profile(profile, lock_path=lock_path, mirror=mirror or None).items():
        result(f"{name}\t{path}", name=name, path=str(path))


# --- first boot: seeds, local clusters, acceptance (issue 3) ------------------------------------


@task(help={"build_dir": "the build directory holding build-manifest.json, e.g. build/k8s-1.17"})
def verify(c: Context, build_dir: str = "build/k8s-1.17") -> None:
    """Check a build's outputs against its build-manifest.json."""
    from pathlib import Path

    from nodeimage.verify import verify_build

    verify_build(Path(build_dir))
    result(f"{build_dir}: every output matches build-manifest.json", verified=str(build_dir))


@task(
    help={
        "profile": "profile to build twice (default k8s-1.17)",
        "out": "where the two builds go: <out>/a and <out>/b (default build/repro)",
        "formats": "output formats to build and compare (default qcow2,ova,containerdisk)",
        "mirror": "mirror directory or base URL for the artifacts (default $NODEIMAGE_MIRROR)",
        "lock_file": "lock file to build from (default artifacts.lock.yaml)",
        "suite": "also run the image suite in each build",
        "compare": "only compare two existing build directories, given as 'DIR_A,DIR_B'; builds nothing",
    }
)
def repro(
    c: Context,
    profile: str = "k8s-1.17",
    out: str = "build/repro",
    formats: str = "qcow2,ova,containerdisk",
    mirror: str = "",
    lock_file: str = "",
    suite: bool = False,
    compare: str = "",
) -> None:
    """Build twice and report identical digests or what differs."""
    from pathlib import Path

    from nodeimage.fsutil import atomic_write
    from nodeimage.repro import build_twice, compare_builds

    if compare:
        dir_a, _, dir_b = compare.partition(",")
        if not dir_a or not dir_b:
            raise Exit(f"error: --compare takes two build directories as 'DIR_A,DIR_B', got {compare!r}", code=2)
        report = compare_builds(Path(dir_a), Path(dir_b))
    else:
        report = build_twice(
            profile,
            out_root=Path(out),
            formats=formats,
            mirror=mirror or os.environ.get("NODEIMAGE_MIRROR") or None,
            lock_file=Path(lock_file) if lock_file else None,
            run_suite=suite,
        )
        atomic_write(Path(out) / "repro-report.txt", report.render())
    result(report.render().rstrip("\n"), identical=report.identical)
    if not report.identical:
        raise Exit("error: the two builds differ (see above)", code=1)
