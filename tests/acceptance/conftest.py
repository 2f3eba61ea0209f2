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

    def version(self, component: str) -> str:
        return self.components[component]

    def bare(self, component: str) -> str:
        return self.components[component].removeprefix("v")

    @property
    def kubernetes_minor(self) -> int:
        return int(self.kubernetes.removeprefix("v").split(".")[1])

    @property
    def needs_cgroup_v1(self) -> bool:
        """The kubelet before 1.19 refuses the unified (v2) layout (kubernetes issue 90710, kind issue 2082)."""
        return self.kubernetes_minor < 19


def load_expected(profile_name: str, root: Path = REPO) -> Expected:
    """Read the profile and check that the lock pins the versions the profile names."""
    path = root / "profiles" / f"{profile_name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in (root / "profiles").glob("*.yaml"))
        raise pytest.UsageError(f"--nodeimage-profile={profile_name}: no {path}; profiles: {', '.join(names)}")
    profile: dict[str, Any] = yaml.safe_load(path.read_text())
    lock: dict[str, Any] = yaml.safe_load((root / "artifacts.lock.yaml").read_text())
    components = {name: str(v) for name, v in profile["components"].items()}
    for name, version in components.items():
        pinned = str(lock["artifacts"].get(name, {}).get("version"))
        if pinned != version:
            raise pytest.UsageError(f"profile {profile_name} wants {name} {version} but the lock pins {pinned}")
    base = profile["base"]
    cni = profile.get("cni", {})
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
    )


@pytest.fixture(scope="session")
def expected(pytestconfig: pytest.Config) -> Expected:
    return load_expected(pytestconfig.getoption("nodeimage_profile"))


@pytest.fixture(scope="session")
def booted(pytestconfig: pytest.Config) -> bool:
    return bool(pytestconfig.getoption("booted"))
