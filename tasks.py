"""Invoke tasks for nodeimage: each parses its options and calls one library function.

Run `invoke --list` for the tasks and `invoke --help <task>` for their options.
"""

from __future__ import annotations

import errno
import functools
import inspect
import os
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from invoke import Context, Exit
from invoke import task as invoke_task

from nodeimage.log import NodeimageError, debug_enabled, event, result

F = TypeVar("F", bound=Callable[..., Any])

COMMON_HELP = {
    "debug": "show every command run (`+ cmd`), every packer line, and tracebacks (also NODEIMAGE_DEBUG=1)",
    "json": "print one JSON event per line on stdout instead of plain results (also NODEIMAGE_JSON=1; "
    "schema: docs/events.schema.json)",
}


def _switches(c: Context | None, debug: bool, json: bool) -> None:
    """--debug (or `invoke --echo`, NODEIMAGE_DEBUG=1) and --json, for this process and what it runs."""
    if debug or os.environ.get("NODEIMAGE_DEBUG") or (c is not None and getattr(c.config.run, "echo", False)):
        os.environ["NODEIMAGE_DEBUG"] = "1"
    if json:
        os.environ["NODEIMAGE_JSON"] = "1"


_OS_HINTS = {
    errno.ENOSPC: "the filesystem is full: free space there, or point --out / NODEIMAGE_CACHE elsewhere",
    errno.EROFS: "the filesystem is read-only: choose a writable directory",
    errno.EACCES: "permission denied: fix the permissions or choose another path",
    errno.EPERM: "not permitted: run as the right user (root for image builds) or choose another path",
    errno.EISDIR: "a directory is where a file was expected: give a file's path",
    errno.ENOTDIR: "a file is where a directory was expected: give a directory",
    errno.ENOENT: "it does not exist: check the path",
    errno.EEXIST: "it already exists: remove it or choose another path",
}


def _os_error(exc: OSError) -> tuple[str, str]:
    """One sentence for an OS error: the path(s), the reason, and what to do."""
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    reason = exc.strerror or str(exc)
    message = f"{paths}: {reason}" if paths else reason
    return message, _OS_HINTS.get(exc.errno or 0, "rerun with --debug for the traceback")


def int_option(name: str, value: str, *, minimum: int = 0, default: int | None = None) -> int | None:
    """An integer option given as text (invoke would crash with a traceback on `--cpus abc`)."""
    if value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum:
        from nodeimage.log import die

        die(f"--{name.replace('_', '-')}: {value!r} is not a whole number of at least {minimum}",
            hint=f"e.g. --{name.replace('_', '-')}={max(minimum, 2)}")  # fmt: skip
    return number


def _user_errors(fn: F) -> F:
    """Turn NodeimageError and Ctrl-C into one message and an exit code (tracebacks only with --debug), and give
    the task the --debug and --json options. Applied by :func:`task`; harmless if also applied by hand."""
    if getattr(fn, "_nodeimage_task", False):
        return fn

    @functools.wraps(fn)
    def wrapper(*args: Any, debug: bool = False, json: bool = False, **kwargs: Any) -> Any:
        _switches(args[0] if args and isinstance(args[0], Context) else None, debug, json)
        try:
            return fn(*args, **kwargs)
        except NodeimageError as exc:
            if debug_enabled():
                traceback.print_exc()
            event("error", message=exc.message, hint=exc.hint)
            raise Exit(f"error: {exc}", code=1) from None
        except KeyboardInterrupt:
            event("error", message="interrupted", hint=None)
            raise Exit("interrupted", code=130) from None
        except OSError as exc:  # a filesystem or OS fault no check caught: still one message, naming the path
            if debug_enabled():
                traceback.print_exc()
            message, hint = _os_error(exc)
            event("error", message=message, hint=hint)
            raise Exit(f"error: {message}\n  hint: {hint}", code=1) from None

    params = list(inspect.signature(fn).parameters.values())
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool)
             for n in ("debug", "json")]  # fmt: skip
    wrapper.__signature__ = inspect.Signature([*params, *extra])  # type: ignore[attr-defined]
    wrapper._nodeimage_task = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def task(*args: Any, help: dict[str, str] | None = None, **kwargs: Any) -> Any:
    """invoke's @task, plus what every nodeimage task has: --debug, --json and one clean error message."""
    if args and callable(args[0]):
        return invoke_task(_user_errors(args[0]), help=dict(COMMON_HELP))
    return lambda fn: invoke_task(_user_errors(fn), *args, help={**(help or {}), **COMMON_HELP}, **kwargs)


# --- tasks ---------------------------------------------------------------------------------------
# Each task: typed options, a docstring whose first line reads well in `invoke --list`,
# help={...} for every option, and a body that calls one library function. The task decorator
# above adds --debug and --json and turns errors into one message.


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
@_user_errors
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
@_user_errors
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
@_user_errors
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
@_user_errors
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
        "fast": "skip the end-to-end tests (marker e2e) that build and boot VM images",
        "pytest_args": "extra arguments for pytest, e.g. '-k profiles -x'",
    }
)
def test(c: Context, fast: bool = False, pytest_args: str = "") -> None:
    """Run the test suite: linters, unit, integration and (unless --fast) the e2e builds and boots."""
    import sys

    pytest = f"{sys.executable} -m pytest -rs --durations=15"
    # first what can spread over the cores, then the e2e tests, which share their builds (one process)
    c.run(f"{pytest} -m 'not e2e' {pytest_args}", echo=True, pty=False)
    if not fast:
        c.run(f"{pytest} -v -m e2e {pytest_args}", echo=True, pty=False)


@task(
    help={
        "image": "the qcow2 to package, e.g. build/k8s-1.17/node.qcow2",
        "out": "the OVA to write (default: the image path with .ova)",
        "profile": "profile whose vm: section gives the CPU and memory defaults and whose versions go into the OVF",
        "cpus": "virtual CPUs (default: the profile's vm.cpus)",
        "memory": "memory in MiB (default: the profile's vm.memory_mib)",
    }
)
@_user_errors
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
@_user_errors
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
@_user_errors
def fetch(c: Context, profile: str = "k8s-1.17", mirror: str = "", lock_file: str = "") -> None:
    """Download and verify a profile's artifacts into the cache ($NODEIMAGE_CACHE or ~/.cache/nodeimage)."""
    from pathlib import Path

    from nodeimage.fetch import fetch_profile
    from nodeimage.lock import DEFAULT_LOCK

    lock_path = Path(lock_file) if lock_file else DEFAULT_LOCK
    for name, path in fetch_profile(profile, lock_path=lock_path, mirror=mirror or None).items():
        result(f"{name}\t{path}", name=name, path=str(path))


# --- first boot: seeds, local clusters, acceptance (issue 3) ------------------------------------


@task(
    help={
        "cluster": "cluster name; its secrets live in <state-dir>/<cluster>/ (created by the control-plane seed)",
        "role": "control-plane (creates the cluster's CA and token) or worker",
        "name": "node name: hostname and Kubernetes node name (a DNS label)",
        "ip": "the node's private address, e.g. 192.168.100.10 or 192.168.100.10/24",
        "control_plane_ip": "the control plane's private address (default: --ip for a control plane; "
        "a worker takes it from the cluster)",
        "endpoint": "API server endpoint HOST:PORT (default <control-plane-ip>:6443)",
        "profile": "profile giving the Kubernetes version, pod and service CIDRs (default k8s-1.17); a worker's "
        "profile must have the Kubernetes version recorded in the cluster's cluster.yaml",
        "pod_cidr": "override the profile's pod CIDR (becomes Weave's IPALLOC_RANGE); control plane only: a worker "
        "takes the cluster's, and another value is an error",
        "out": "put the seed in a new 0700 directory DIR/<cluster>-<name>/ (DIR is created 0700 if missing, and "
        "otherwise never changed); default <state-dir>/<cluster>/nodes/<name>/",
        "state_dir": "where cluster directories live (default build/clusters)",
        "ssh_key": "OpenSSH public key file (.pub) authorised for the 'nodeimage' admin user: ssh-ed25519, "
        "ecdsa-sha2-nistp256/384/521, ssh-rsa, sk-ssh-ed25519@openssh.com or sk-ecdsa-sha2-nistp256@openssh.com",
        "nat_nic": "first NIC (DHCP, outbound): interface name or MAC (default ens3)",
        "private_nic": "second NIC (static --ip): interface name or MAC (default ens4)",
        "token_file": "file holding a bootstrap token to use instead of a random one (never pass it as an argument)",
    }
)
@_user_errors
def seed(
    c: Context,
    cluster: str,
    role: str,
    name: str,
    ip: str,
    control_plane_ip: str = "",
    endpoint: str = "",
    profile: str = "k8s-1.17",
    pod_cidr: str = "",
    out: str = "",
    state_dir: str = "",
    ssh_key: str = "",
    nat_nic: str = "ens3",
    private_nic: str = "ens4",
    token_file: str = "",
) -> None:
    """Render a node's cloud-init seed (user-data, meta-data, network-config, seed ISO) for a cluster.

    Refused, with nothing written: a name or address another node of the cluster has, a second control
    plane, and worker options the cluster decides (--pod-cidr, a profile of another Kubernetes version).
    """
    from pathlib import Path

    from nodeimage.nodespec import read_ssh_public_key, read_token_file
    from nodeimage.profiles import load_profile
    from nodeimage.seed import NodeSpec, seed_node

    prof = load_profile(profile)
    iso = seed_node(
        cluster=cluster,
        node=NodeSpec(
            role=role,
            name=name,
            ip=ip,
            nat_nic=nat_nic,
            private_nic=private_nic,
            ssh_public_key=read_ssh_public_key(Path(ssh_key)) if ssh_key else None,
        ),
        kubernetes_version=prof.kubernetes.version,
        pod_cidr=pod_cidr or prof.kubernetes.pod_cidr,
        pod_cidr_given=bool(pod_cidr),
        service_cidr=prof.kubernetes.service_cidr,
        control_plane_ip=control_plane_ip or None,
        endpoint=endpoint or None,
        state_dir=Path(state_dir) if state_dir else None,
        out_dir=Path(out) if out else None,
        token=read_token_file(Path(token_file)) if token_file else None,
        image_repository=prof.kubernetes.image_repository,
        profile=prof.name,
    )
    result(str(iso), path=str(iso))


@task(help={"build_dir": "the build directory holding build-manifest.json, e.g. build/k8s-1.17"})
@_user_errors
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
@_user_errors
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


@task(
    help={
        "workers": "number of worker VMs besides the control plane: a whole number 0-8 (default 1)",
        "image": "node image to boot (never modified: each VM runs on an overlay); default build/<profile>/node.qcow2",
        "cluster": "cluster name (its secrets, seeds and state live in <state-dir>/<cluster>/)",
        "profile": "profile giving the Kubernetes version and CIDRs (default k8s-1.17)",
        "network": "private network of the nodes (default 192.168.100.0/24; control plane .10, workers .11…)",
        "state_dir": "where cluster directories live (default build/clusters)",
        "accel": "kvm or tcg (default: probe whether KVM really runs a guest)",
        "no_wait": "return once the VMs are started, without waiting for SSH and first boot",
        "air_gapped": "cut the nodes off from everything but their private network (first boot pulls nothing)",
    }
)
@_user_errors
def up(
    c: Context,
    workers: str = "1",
    image: str = "",
    cluster: str = "local",
    profile: str = "k8s-1.17",
    network: str = "192.168.100.0/24",
    state_dir: str = "",
    accel: str = "",
    no_wait: bool = False,
    air_gapped: bool = False,
) -> None:
    """Boot a local cluster (1 control plane + N workers) from a node image under qemu."""
    from pathlib import Path

    from nodeimage.cluster import up as cluster_up
    from nodeimage.profiles import load_profile

    prof = load_profile(profile)
    cluster_up(
        wait=not no_wait,
        cluster=cluster,
        image=Path(image) if image else Path("build") / prof.name / "node.qcow2",
        workers=int_option("workers", workers, default=1),
        kubernetes_version=prof.kubernetes.version,
        pod_cidr=prof.kubernetes.pod_cidr,
        service_cidr=prof.kubernetes.service_cidr,
        network=network,
        state_dir=Path(state_dir) if state_dir else None,
        accel=accel or None,
        cpus=prof.vm.cpus,
        memory_mib=prof.vm.memory_mib,
        outbound=not air_gapped,
        image_repository=prof.kubernetes.image_repository,
    )


@task(
    help={
        "cluster": "cluster name (default local)",
        "state_dir": "where cluster directories live (default build/clusters)",
        "purge": "delete the cluster's directory (CA key, token, seeds, kubeconfig) instead of stopping it; "
        "refused while any of its VMs runs: `invoke down` first",
    }
)
@_user_errors
def down(c: Context, cluster: str = "local", state_dir: str = "", purge: bool = False) -> None:
    """Stop a local cluster's VMs and private network and free their ports and overlays (even without its
    state.json: by the VMs' pid files, signalling only the qemu each names)."""
    from pathlib import Path

    from nodeimage.cluster import down as cluster_down

    cluster_down(cluster=cluster, state_dir=Path(state_dir) if state_dir else None, purge=purge)


@task(
    help={
        "hosts": "comma-separated testinfra hosts, e.g. ssh://ubuntu@10.0.0.5,ssh://ubuntu@10.0.0.6",
        "cluster": "take hosts, SSH key and kubeconfig from a cluster started with `invoke up`",
        "kubeconfig": "admin kubeconfig: enables the cluster layer (nodes Ready, Weave, runc and kata pods)",
        "ssh_key": "private key for the SSH hosts",
        "ssh_config": "ssh_config file for the SSH hosts",
        "standins": "the image was built from test stand-ins: skip checks that need real upstream binaries",
        "state_dir": "where cluster directories live (default build/clusters)",
        "pytest_args": "extra pytest arguments, e.g. '-k firstboot -x'",
        "no_sudo": "do not run the checks through sudo (when connecting as root on a node without sudo)",
    }
)
@_user_errors
def acceptance(
    c: Context,
    hosts: str = "",
    cluster: str = "",
    kubeconfig: str = "",
    ssh_key: str = "",
    ssh_config: str = "",
    standins: bool = False,
    state_dir: str = "",
    pytest_args: str = "",
    no_sudo: bool = False,
) -> None:
    """Run the acceptance suite (image, first-boot and cluster layers) against booted nodes."""
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    from nodeimage.acceptance import acceptance_command

    cmd, env = acceptance_command(
        hosts=[h for h in hosts.split(",") if h],
        cluster=cluster or None,
        kubeconfig=Path(kubeconfig) if kubeconfig else None,
        ssh_key=Path(ssh_key) if ssh_key else None,
        ssh_config=Path(ssh_config) if ssh_config else None,
        standins=standins,
        state_dir=Path(state_dir) if state_dir else None,
        extra=shlex.split(pytest_args),
        python=sys.executable,
        sudo=not no_sudo,
    )
    print("+ " + shlex.join(cmd), file=sys.stderr)
    rc = subprocess.run(cmd, env=env, check=False).returncode
    if rc != 0:
        raise Exit(f"acceptance suite failed (pytest exit code {rc})", code=rc)


@task(
    help={
        "profile": "profile to build from upstream (default k8s-1.17)",
        "cluster": "name of the cluster it boots (default real; its secrets stay in build/clusters/<name>/)",
        "keep": "leave the cluster running after the suite (default: `invoke down` it, keeping its secrets)",
    }
)
def test_real(c: Context, profile: str = "k8s-1.17", cluster: str = "real", keep: bool = False) -> None:
    """Lock, build from upstream, boot a control plane and a worker, and run every acceptance layer.

    The real path in one command (image, first-boot and cluster layers of the suite, against the real
    binaries). Needs the upstream hosts (internet) and, for a usable speed, KVM.
    """
    from nodeimage.log import info, step

    with step(f"test-real: {profile} from upstream"):
        lock(c, profile=profile)
        build(c, profile=profile)
        up(c, profile=profile, cluster=cluster)
        try:
            acceptance(c, cluster=cluster)
        finally:
            if keep:
                info(f"cluster {cluster} is left running: `invoke down --cluster {cluster}`")
            else:
                down(c, cluster=cluster)


@task(help={"which": "which benchmark: build, layers, images, ova or all (default all)"})
def bench(c: Context, which: str = "all") -> None:
    """Run the benchmarks in bench/ and print their figures (they never fail on a timing)."""
    import sys

    scripts = {
        "build": "bench/build_bench.py",
        "layers": "bench/layers_bench.py",
        "images": "bench/images_bench.py",
        "ova": "bench/ova_bench.py",
    }
    if which not in (*scripts, "all"):
        from nodeimage.log import die

        die(f"invalid --which value: {which!r}", hint=f"expected one of {', '.join(scripts)}, all")
    for name, script in scripts.items():
        if which in (name, "all"):
            c.run(f"{sys.executable} {script}", echo=True, pty=False)
