"""Image acceptance suite: options, expectations and mode-dependent skips.

Run it against an image with testinfra's ``--hosts``:

    pytest tests/acceptance --hosts=chroot:///mnt/img                      # un-booted image tree
    pytest tests/acceptance --connection=chroot --hosts=/mnt/img         # the same, testinfra's own form
    pytest tests/acceptance --hosts=ssh://ubuntu@10.0.0.5 --sudo --booted  # a booted node

Expected versions come from this checkout (``profiles/<name>.yaml`` and
``artifacts.lock.yaml``), never from the image. Modes:

- ``--booted``: the image is running. Without it (a chroot of an image file)
  nothing runs inside it, so checks of loaded modules, active sysctls and
  running services skip; with it, checks of state a first boot legitimately
  regenerates (machine-id, SSH host keys) skip.
- ``--standins``: the image was built from tests/standins, so checks of real
  upstream behaviour (marker ``needs_upstream``) skip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
STANDIN_REASON = "needs the real upstream binaries; this image was built from test stand-ins"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nodeimage acceptance")
    group.addoption(
        "--nodeimage-profile", default="k8s-1.17", help="profile the image was built from (profiles/<name>.yaml)"
    )
    group.addoption("--standins", action="store_true", help="the image was built from tests/standins, not upstream")
    group.addoption(
        "--nodeimage-lock", default=str(REPO / "artifacts.lock.yaml"), help="the lock file the image was built from"
    )
    group.addoption("--booted", action="store_true", help="the image is running (ssh), not an un-booted tree (chroot)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "booted_only: needs a running image (modules loaded, services active)")
    config.addinivalue_line("markers", "unbooted_only: checks state that a first boot legitimately regenerates")
    _accept_chroot_urls(config)


def _accept_chroot_urls(config: pytest.Config) -> None:
    """Let ``--hosts=chroot:///mnt/img`` mean testinfra's ``--connection=chroot --hosts=/mnt/img``.

    testinfra's own parser would take the (empty) URL host part as the chroot directory.
    """
    hosts = getattr(config.option, "hosts", None)
    if not hosts or "chroot://" not in hosts:
        return
    specs = hosts.split(",")
    if not all(s.startswith("chroot://") for s in specs):
        raise pytest.UsageError(f"--hosts={hosts}: chroot:// hosts cannot be mixed with other connections")
    paths = [s.removeprefix("chroot://") for s in specs]
    if not all(p.startswith("/") for p in paths):
        raise pytest.UsageError(f"--hosts={hosts}: write a chroot as chroot:///absolute/path")
    for path in paths:  # one clear error instead of a run where every test fails (or a few pass) on nothing
        if not Path(path).is_dir():
            raise pytest.UsageError(f"--hosts=chroot://{path}: no such directory (give the image's file tree)")
        if not (Path(path) / "etc" / "nodeimage-release").is_file():
            raise pytest.UsageError(
                f"--hosts=chroot://{path}: not a nodeimage image tree (no etc/nodeimage-release in it)"
            )
    config.option.hosts = ",".join(paths)
    config.option.connection = "chroot"


def _has_target(config: pytest.Config) -> bool:
    hosts = config.getoption("hosts", default=None)
    return bool(hosts) or bool(config.getoption("connection", default=None))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    booted = config.getoption("booted", default=False)
    standins = config.getoption("standins", default=False)
    target = _has_target(config)
    for item in items:
        if here not in Path(str(item.fspath)).resolve().parents:
            continue
        if not target and "host" in getattr(item, "fixturenames", ()):
            item.add_marker(
                pytest.mark.skip(reason="no image given: pass --hosts=chroot:///mnt/img or --hosts=ssh://user@host")
            )
        elif standins and item.get_closest_marker("needs_upstream"):
            item.add_marker(pytest.mark.skip(reason=STANDIN_REASON))
        elif not booted and item.get_closest_marker("booted_only"):
            item.add_marker(pytest.mark.skip(reason="image not booted (chroot): nothing is loaded or running"))
        elif booted and item.get_closest_marker("unbooted_only"):
            item.add_marker(pytest.mark.skip(reason="first boot regenerates this; checked on the un-booted image"))


@dataclass(frozen=True)
class Expected:
    """What the image must contain, from this checkout's profile and lock."""

    profile: str
    stack: str
    distro: str
    release: str
    kubernetes: str
    image_repository: str  # kubeadm's imageRepository and CRI-O's pause image registry
    cni: str
    cni_image_repository: str | None
    components: dict[str, str]  # lock artifact name -> pinned version
    images: tuple[tuple[str, str | None], ...] = ()  # (ref, digest pinned in the lock or None) to be baked
    cni_images: tuple[str, ...] = ()  # those of them the CNI's pods run

    def version(self, component: str) -> str:
        return self.components[component]

    # --- what the profile's stack says the image is (nodeimage/stacks): checked against the image, never read
    # from it, so the same checks hold each stack to its own data

    @property
    def unit(self) -> Any:
        """The profile's stack (nodeimage.stacks.Stack)."""
        from nodeimage import stacks

        return stacks.get(self.stack)

    @property
    def settings(self) -> Any:
        from nodeimage.stacks import Settings

        return Settings(self.kubernetes, self.image_repository, "amd64", dict(self.components))

    @property
    def installs(self) -> list[Any]:
        """The stack's installs (kind, artifact, member, dest, mode) for this profile's versions."""
        return list(self.unit.installs(self.settings))

    @property
    def rendered(self) -> dict[str, str]:
        """The files the stack renders, path -> content."""
        return {f.path: f.content for f in self.unit.files(self.settings)}

    def installed_from(self, dest: str) -> str | None:
        """The lock artifact the stack installs ``dest`` from (None: it installs nothing there)."""
        return next((op.artifact for op in self.installs if op.dest == dest), None)

    @property
    def unit_cni(self) -> Any:
        """The profile's CNI (nodeimage.cni.Cni)."""
        from nodeimage import cni

        return cni.get(self.cni)

    @property
    def kata_handler(self) -> str:
        return self.unit.kata.name

    @property
    def pause_image(self) -> str:
        return next(i for i in self.unit.images(self.settings) if i.rsplit(":", 1)[0].endswith("/pause"))

    def bare(self, component: str) -> str:
        return self.components[component].removeprefix("v")

    @property
    def kubernetes_minor(self) -> int:
        return int(self.kubernetes.removeprefix("v").split(".")[1])

    @property
    def needs_cgroup_v1(self) -> bool:
        """The kubelet before 1.19 refuses the unified (v2) layout (kubernetes issue 90710, kind issue 2082); the
        stack says which layout its kubelet needs."""
        return self.unit.cgroup == "v1"


def expected_images(profile_name: str, lock_path: Path) -> tuple[tuple[tuple[str, str | None], ...], tuple[str, ...]]:
    """The images this checkout's build configuration bakes for the profile, with the lock's digests, and the
    CNI's among them."""
    from nodeimage import cni, stacks
    from nodeimage.config import platform_of, required_images
    from nodeimage.lock import load_lock
    from nodeimage.profiles import load_profile
    from nodeimage.stacks import Settings

    prof = load_profile(profile_name)
    lock = load_lock(lock_path)
    entries = lock.select(dict(prof.components), prof.arch)
    settings = Settings(prof.kubernetes.version, prof.kubernetes.image_repository, prof.arch,
                        {e.name: e.version for e in entries})  # fmt: skip
    unit = cni.get(prof.cni.name)
    refs = required_images(prof, stacks.get(prof.stack), unit, settings)
    known = {(i.ref, i.platform): i.digest for i in lock.images}
    cni_refs = unit.expected_images(settings.versions[unit.artifact], prof.cni.image_repository)
    return tuple((r, known.get((r, platform_of(prof.arch)))) for r in refs), tuple(cni_refs)


def load_expected(profile_name: str, root: Path = REPO, lock_path: Path | None = None) -> Expected:
    """Read the profile and check that the lock pins the versions the profile names."""
    lock_path = lock_path or root / "artifacts.lock.yaml"
    path = root / "profiles" / f"{profile_name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in (root / "profiles").glob("*.yaml"))
        raise pytest.UsageError(f"--nodeimage-profile={profile_name}: no {path}; profiles: {', '.join(names)}")
    profile: dict[str, Any] = yaml.safe_load(path.read_text())
    lock: dict[str, Any] = yaml.safe_load(lock_path.read_text())
    components = {name: str(v) for name, v in profile["components"].items()}
    for name, version in components.items():
        art = lock["artifacts"].get(name, {})
        pinned = [str(a.get("version")) for a in (art if isinstance(art, list) else [art])]
        if version not in pinned:
            raise pytest.UsageError(f"profile {profile_name} wants {name} {version} but the lock pins {pinned}")
    base = profile["base"]
    cni = profile.get("cni", {})
    images, cni_images = expected_images(profile_name, lock_path)
    return Expected(
        profile=profile["name"],
        stack=str(profile["stack"]),
        distro=str(base["distro"]),
        release=str(base["release"]),
        kubernetes=str(profile["kubernetes"]["version"]),
        image_repository=str(profile["kubernetes"].get("image_repository", "registry.k8s.io")),
        cni=str(cni.get("name")),
        cni_image_repository=cni.get("image_repository"),
        components=components,
        images=images,
        cni_images=cni_images,
    )


@pytest.fixture(scope="session")
def expected(pytestconfig: pytest.Config) -> Expected:
    lock = Path(pytestconfig.getoption("nodeimage_lock"))
    return load_expected(pytestconfig.getoption("nodeimage_profile"), lock_path=lock)


@pytest.fixture(scope="session")
def booted(pytestconfig: pytest.Config) -> bool:
    return bool(pytestconfig.getoption("booted"))
