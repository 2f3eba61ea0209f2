"""Ubuntu: the default base (Ubuntu 20.04 cloud images for the classic stack)."""

from __future__ import annotations

from nodeimage.distros import Distro, Release, register
from nodeimage.distros.debian import COMMON_BASE, NODE_PACKAGES

UBUNTU = register(
    Distro(
        name="ubuntu",
        releases=(
            Release(
                codename="focal",
                version="20.04",
                epoch=1587600000,  # 2020-04-23, Ubuntu 20.04
                components=("main", "universe"),
                # netplan + systemd-networkd is what cloud-init renders to on Ubuntu.
                base_packages=("linux-image-virtual", "initramfs-tools", *COMMON_BASE, "netplan.io"),
                keyring="/usr/share/keyrings/ubuntu-archive-keyring.gpg",
            ),
            Release(
                codename="noble",
                version="24.04",
                epoch=1714003200,  # 2024-04-25, Ubuntu 24.04
                components=("main", "universe"),
                base_packages=("linux-image-virtual", "initramfs-tools", *COMMON_BASE, "netplan.io"),
                keyring="/usr/share/keyrings/ubuntu-archive-keyring.gpg",
            ),
        ),
        ovf_cim_id=94,
        ovf_vmware_id="ubuntu64Guest",
        ovf_description="Ubuntu 64-bit",
        node_packages=NODE_PACKAGES,
        # The build VM's NIC configuration, rendered by cloud-init into netplan (image-builder's sysprep
        # deletes the same); a node's own cloud-init writes its own at first boot.
        generalise_remove=("etc/netplan/50-cloud-init.yaml",),
    )
)
