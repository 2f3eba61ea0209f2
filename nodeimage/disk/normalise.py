"""Normalise: turn the build VM's disk into a reproducible image, through its file tree.

A filesystem written by a booted VM is not reproducible (inode allocation,
journal, times); rebuilding it from its file tree with the same UUID, a seed
derived from it, clamped times and the same virtual size is. The build runs
its chroot layers, generalisation and the un-booted suite on that tree inside
``with open_tree(...) as tree:``; the image is written when the block ends
without an error, and nothing is written when it fails.

GPT disks (Ubuntu's cloud images: BIOS-boot and EFI partitions beside the
root) keep their layout: their root filesystem is mounted read-write in a
raw copy instead, trimmed, and converted; such an image is not
bit-reproducible (it keeps the booted build's block allocation).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from nodeimage.disk.reader import RawDisk, disk_to_tree, mounted, read_fs_label, read_fs_uuid, read_partition
from nodeimage.disk.reader import virtual_size as image_virtual_size
from nodeimage.disk.writer import derive_hash_seed, tree_to_disk_bytes
from nodeimage.fsutil import atomic_path
from nodeimage.log import step, warn
from nodeimage.run import run, which


@contextlib.contextmanager
def open_tree(
    in_qcow2: Path,
    out_qcow2: Path,
    *,
    epoch: int,
    kernel_args: Sequence[str] = (),
    scratch: Path | None = None,
    fill: Callable[[Path], None] | None = None,
) -> Iterator[Path]:
    """Yield the root file tree of ``in_qcow2``; on a clean exit write the normalised ``out_qcow2``.

    ``fill`` fills the (empty) tree instead of copying ``in_qcow2``'s files, e.g. from a cached later layer;
    the filesystem's UUID, label and size still come from ``in_qcow2``. Not for GPT disks.
    """
    in_qcow2, out_qcow2 = Path(in_qcow2), Path(out_qcow2)
    scratch = Path(scratch) if scratch else out_qcow2.parent
    scratch.mkdir(parents=True, exist_ok=True)
    if is_gpt(in_qcow2):
        if fill is not None:
            raise ValueError("a GPT disk is prepared in place; its tree cannot be filled from elsewhere")
        with _in_place(in_qcow2, out_qcow2, scratch) as tree:
            yield tree
        return
    fs_uuid = read_fs_uuid(in_qcow2)
    label = read_fs_label(in_qcow2) or "rootfs"
    size = image_virtual_size(in_qcow2)
    with tempfile.TemporaryDirectory(prefix=".nodeimage-norm-", dir=scratch) as tmp:
        tree = Path(tmp) / "tree"
        if fill is None:
            disk_to_tree(in_qcow2, tree)
        else:
            fill(tree)
        yield tree
        with step(f"Rebuilding the filesystem from the tree (UUID {fs_uuid}): {out_qcow2}"):
            tree_to_disk_bytes(
                tree,
                out_qcow2,
                size=size,
                fs_uuid=fs_uuid,
                hash_seed=derive_hash_seed(fs_uuid),
                epoch=epoch,
                label=label,
                kernel_args=kernel_args,
            )


def is_gpt(image: Path) -> bool:
    """GPT disks (Ubuntu's cloud images) are prepared in place, not rebuilt from their tree."""
    return read_partition(image).table == "gpt"


@contextlib.contextmanager
def _in_place(in_qcow2: Path, out_qcow2: Path, scratch: Path) -> Iterator[Path]:
    warn(
        f"{in_qcow2} has a GPT layout: its filesystem is cleaned in place, not rebuilt from its file tree, "
        "so the qcow2 is not bit-for-bit reproducible"
    )
    which("mount", "mount")
    with step(f"Opening {in_qcow2} in place (GPT)"), RawDisk(in_qcow2, scratch) as disk:
        mnt = disk.tmp / "mnt"
        mnt.mkdir()
        with mounted(disk, mnt, read_only=False):
            yield mnt
            # Free what was deleted, so the conversion below drops those blocks.
            run(["fstrim", mnt], check=False, capture=True)
        with atomic_path(out_qcow2, mode=0o644) as tmp:
            run(["qemu-img", "convert", "-q", "-O", "qcow2", disk.raw, tmp], capture=True)
