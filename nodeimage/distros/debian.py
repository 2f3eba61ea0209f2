"""Debian: the e2e base here (`invoke base` builds Debian 12 from Debian's mirror)."""

from __future__ import annotations

from nodeimage.distros import Distro, Release, register

# What `invoke base` puts in every base image: a kernel, systemd, cloud-init (NoCloud), OpenSSH and
# what growpart and DHCP need; ifupdown + dhclient because cloud-init's "eni" renderer brings up DHCP.
COMMON_BASE = (
    "systemd-sysv", "udev", "dbus", "cloud-init", "cloud-guest-utils", "fdisk", "openssh-server", "sudo",
    "python3", "iproute2", "kmod", "procps", "ca-certificates", "e2fsprogs", "apt", "gnupg", "netbase",
    "xz-utils",
)  # fmt: skip

# Host tools kubeadm's preflight and CRI-O need on every node, by their Debian/Ubuntu names
# (conntrack, ip, iptables, mount, nsenter are fatal when missing; ebtables, ethtool, socat are warnings).
NODE_PACKAGES = (
    "conntrack", "ebtables", "ethtool", "iproute2", "iptables", "kmod", "mount", "socat", "util-linux",
    "libseccomp2", "ca-certificates", "tar", "xz-utils", "gzip", "zstd",
)  # fmt: skip

DEBIAN = register(
    Distro(
        name="debian",
        releases=(
            Release(
                codename="bookworm",
                version="12",
                epoch=1686355200,  # 2023-06-10, Debian 12.0
                base_packages=("linux-image-amd64", *COMMON_BASE, "ifupdown", "isc-dhcp-client"),
            ),
        ),
        ovf_cim_id=96,
        ovf_vmware_id="debian11_64Guest",
        ovf_description="Debian 64-bit",
        node_packages=NODE_PACKAGES,
    )
)
