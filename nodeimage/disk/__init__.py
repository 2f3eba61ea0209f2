"""Disk images: writing reproducible BIOS-bootable disks (writer), reading them without booting
(reader), and turning the build VM's disk into the published image (normalise)."""

from nodeimage.disk.reader import (
    PART_OFFSET,
    Partition,
    disk_to_tree,
    image_format,
    parse_gpt,
    parse_mbr,
    read_file,
    read_fs_label,
    read_fs_uuid,
    read_partition,
    virtual_size,
)
from nodeimage.disk.writer import FORMAT_VERSION, GRUB_DIR, derive_hash_seed, tree_to_disk, write_grub_cfg

__all__ = [
    "FORMAT_VERSION",
    "GRUB_DIR",
    "PART_OFFSET",
    "Partition",
    "derive_hash_seed",
    "disk_to_tree",
    "image_format",
    "parse_gpt",
    "parse_mbr",
    "read_file",
    "read_fs_label",
    "read_fs_uuid",
    "read_partition",
    "tree_to_disk",
    "virtual_size",
    "write_grub_cfg",
]
