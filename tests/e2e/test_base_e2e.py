"""`invoke base` for real: the e2e build's Debian 12 base, made by mmdebstrap from Debian's mirror.

The e2e build makes the base (or reuses it from build/e2e/base); these checks read that image instead of
bootstrapping a second one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodeimage import base, disk
from tests.e2e.conftest import E2EBuild

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def base_image(e2e_build: E2EBuild) -> Path:
    image = e2e_build.out_root / "base" / "debian-bookworm-amd64.qcow2"
    assert image.is_file(), "the e2e build made no base image"
    return image


def test_base_is_generalised_and_bootable(base_image: Path) -> None:
    record = json.loads(base_image.with_suffix(".json").read_text())
    assert disk.read_fs_uuid(base_image) == record["fs_uuid"]
    assert f"UUID={record['fs_uuid']} / ext4" in disk.read_file(base_image, "/etc/fstab").decode()
    assert b"Package: cloud-init" in disk.read_file(base_image, "/var/lib/dpkg/status")
    assert disk.read_file(base_image, "/etc/machine-id") == b""
    assert f"root=UUID={record['fs_uuid']}" in disk.read_file(base_image, "/boot/grub/grub.cfg").decode()


def test_same_inputs_reuse_the_base(base_image: Path) -> None:
    mtime = base_image.stat().st_mtime
    again = base.build_base(
        distro="debian", release="bookworm", mirror="http://deb.debian.org/debian", out_dir=base_image.parent
    )
    assert again == base_image and base_image.stat().st_mtime == mtime
