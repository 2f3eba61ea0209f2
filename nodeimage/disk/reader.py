"""Reading disk images without booting them: partition tables, filesystems, files, whole trees.

An image is read through ``qemu-img`` (any format it knows) and ``debugfs``,
or, for a whole tree, loop-mounted read-only at its partition's offset (no
partition nodes or device-mapper are needed, which these machines lack).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nodeimage.log import die, step
from nodeimage.run import output, run, which

SECTOR = 512
PART_OFFSET = 1024 * 1024  # first partition starts at 1 MiB, the usual alignment


@dataclass(frozen=True)
class Partition:
    """The root partition of a disk, in bytes: an msdos disk's only partition, or a GPT disk's
    (largest) Linux filesystem partition, as on Ubuntu's cloud images."""

    offset: int
    size: int
    type: int
    table: str = "msdos"


def parse_mbr(mbr: bytes, source: object = "disk") -> Partition:
    """Find the single partition of an msdos-labelled disk; die for layouts we do not handle."""
    if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
        die(f"{source} has no MBR boot signature: not an msdos-partitioned disk")
    parts = []
    for i in range(4):
        entry = mbr[446 + 16 * i : 462 + 16 * i]
        ptype = entry[4]
        first, count = struct.unpack("<II", entry[8:16])
        if ptype == 0xEE:
            return parse_gpt(mbr, source)
        if ptype and count:
            parts.append(Partition(first * SECTOR, count * SECTOR, ptype))
    if len(parts) != 1:
        die(f"{source} has {len(parts)} partitions; nodeimage handles disks with exactly one")
    if parts[0].type in (0x05, 0x0F, 0x85):
        die(f"{source}'s only partition is an extended partition, which nodeimage does not handle")
    return parts[0]


# GPT partition type "Linux filesystem data", as stored on disk (mixed-endian).
LINUX_FS_GUID = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4").bytes_le
# What to read from the start of a disk to see its partition table: the MBR,
# and for GPT the header (LBA 1) and 128 entries of 128 bytes (LBAs 2-33).
TABLE_BYTES = 34 * SECTOR


def parse_gpt(head: bytes, source: object = "disk") -> Partition:
    """The largest Linux filesystem partition of a GPT disk (Ubuntu cloud images: partition 1)."""
    header = head[SECTOR : 2 * SECTOR]
    if len(head) < TABLE_BYTES or header[:8] != b"EFI PART":
        die(f"{source} has a protective MBR but no readable GPT header")
    entries_lba, count, size = struct.unpack("<QII", header[72:88])
    start = entries_lba * SECTOR
    candidates = []
    for i in range(count):
        entry = head[start + i * size : start + (i + 1) * size]
        if len(entry) < 48:
            break
        first, last = struct.unpack("<QQ", entry[32:48])
        if entry[:16] == LINUX_FS_GUID and last >= first:
            candidates.append(Partition(first * SECTOR, (last - first + 1) * SECTOR, 0x83, "gpt"))
    if not candidates:
        die(f"{source} has a GPT partition table without a Linux filesystem partition")
    return max(candidates, key=lambda p: p.size)


def _dd(image: Path, tmp: Path, *, offset: int, length: int) -> bytes:
    """Read ``length`` bytes at ``offset`` of a disk image's guest view without converting all of it."""
    # qemu-img dd's count/skip semantics differ between qemu versions; a raw
    # driver window (offset, size) over the image is stable since qemu 2.9.
    spec = {
        "driver": "raw",
        "offset": offset,
        "size": length,
        "file": {"driver": image_format(image), "file": {"driver": "file", "filename": str(Path(image).resolve())}},
    }
    out = tmp / f"window-{offset}-{length}"
    run(["qemu-img", "convert", "-q", "-O", "raw", "json:" + json.dumps(spec), out], capture=True)
    return out.read_bytes()


def image_format(image: Path) -> str:
    """The format qemu-img detects for ``image`` (qcow2, raw, ...)."""
    return str(_image_info(image)["format"])


def _image_info(image: Path) -> dict[str, object]:
    _check_image(image)
    return json.loads(output(["qemu-img", "info", "--output=json", image]))


def _check_image(qcow2: Path) -> None:
    if not Path(qcow2).is_file():
        die(f"disk image not found: {qcow2}")


def read_partition(qcow2: Path) -> Partition:
    """The single partition of ``qcow2`` (any format qemu-img reads)."""
    _check_image(qcow2)
    with tempfile.TemporaryDirectory(prefix="nodeimage-mbr-") as tmp:
        return parse_mbr(_dd(qcow2, Path(tmp), offset=0, length=TABLE_BYTES), qcow2)


def _superblock(qcow2: Path) -> tuple[Partition, bytes]:
    part = read_partition(qcow2)
    with tempfile.TemporaryDirectory(prefix="nodeimage-sb-") as tmp:
        sb = _dd(qcow2, Path(tmp), offset=part.offset + 1024, length=1024)
    if sb[0x38:0x3A] != b"\x53\xef":
        die(f"the partition of {qcow2} does not hold an ext2/3/4 filesystem")
    return part, sb


def read_fs_uuid(qcow2: Path) -> str:
    """The UUID of the ext4 filesystem in a single-partition disk image."""
    _, sb = _superblock(qcow2)
    return str(uuid.UUID(bytes=sb[0x68:0x78]))


def read_fs_label(qcow2: Path) -> str:
    _, sb = _superblock(qcow2)
    return sb[0x78:0x88].split(b"\0", 1)[0].decode(errors="replace")


def virtual_size(image: Path) -> int:
    return int(_image_info(image)["virtual-size"])  # type: ignore[call-overload]


class RawDisk:
    """A disk image converted to a sparse raw file in a temporary directory."""

    def __init__(self, image: Path, scratch: Path) -> None:
        _check_image(image)
        self.tmp = Path(tempfile.mkdtemp(prefix=".nodeimage-raw-", dir=scratch))
        self.raw = self.tmp / "disk.raw"
        try:
            run(["qemu-img", "convert", "-q", "-O", "raw", image, self.raw], capture=True)
            with self.raw.open("rb") as fh:
                self.part = parse_mbr(fh.read(TABLE_BYTES), image)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> RawDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def mounted(disk: RawDisk, mnt: Path, *, read_only: bool) -> Iterator[Path]:
    """Loop-mount the disk's root partition at ``mnt`` (no partition nodes needed), unmount after."""
    opts = f"loop,offset={disk.part.offset},sizelimit={disk.part.size}" + (",ro" if read_only else "")
    run(["mount", "-t", "ext4", "-o", opts, disk.raw, mnt], capture=True)
    try:
        yield mnt
    finally:
        run(["umount", mnt], capture=True)


def read_file(qcow2: Path, path: str) -> bytes:
    """Read one regular file from the image's root filesystem, without booting or mounting it."""
    if not path.startswith("/") or "\n" in path:
        die(f"image path must be absolute and on one line, got {path!r}")
    with tempfile.TemporaryDirectory(prefix="nodeimage-read-") as tmp_name, RawDisk(qcow2, Path(tmp_name)) as disk:
        dest = Path(tmp_name) / "file"
        dev = f"{disk.raw}?offset={disk.part.offset}"
        stat = run(["debugfs", "-R", f"stat {dq(path)}", dev], capture=True)
        text = stat.stdout.decode(errors="replace")
        if "Type: regular" not in text:
            kind = re.search(r"Type: (\w+)", text)
            die(f"{path} in {qcow2} is not a regular file ({kind.group(1) if kind else 'not found'})")
        run(["debugfs", "-R", f"dump {dq(path)} {dq(str(dest))}", dev], capture=True)
        if not dest.exists():
            die(f"could not read {path} from {qcow2}")
        return dest.read_bytes()


def dq(arg: str) -> str:
    """Quote one argument for debugfs's command parser (a quote inside is doubled)."""
    return '"' + arg.replace('"', '""') + '"'


def disk_to_tree(qcow2: Path, tree: Path) -> None:
    """Copy the root filesystem of a single-partition disk into ``tree``.

    Keeps owners, modes, times, hard links, symlinks and xattrs (file
    capabilities included). ``tree`` must not exist or be empty; it appears
    complete or not at all. Needs root (loop mount).
    """
    tree = Path(tree)
    if tree.exists() and (not tree.is_dir() or any(tree.iterdir())):
        die(f"target directory is not empty: {tree}", hint="remove it or choose a new path")
    if os.geteuid() != 0:
        die("extracting a disk's files needs root (it loop-mounts the filesystem)", hint="run as root")
    which("mount", "mount")
    tree.parent.mkdir(parents=True, exist_ok=True)
    with step(f"Extracting the files of {qcow2}"), RawDisk(qcow2, tree.parent) as disk:
        mnt = disk.tmp / "mnt"
        staging = disk.tmp / "tree"
        mnt.mkdir()
        staging.mkdir()
        with mounted(disk, mnt, read_only=True):
            entries = sorted(p for p in mnt.iterdir() if p.name != "lost+found")
            if entries:
                run(["cp", "-a", "--preserve=mode,ownership,timestamps,links,xattr", *entries, staging], capture=True)
            shutil.copystat(mnt, staging)
            os.chown(staging, mnt.stat().st_uid, mnt.stat().st_gid)
        if tree.exists():
            tree.rmdir()
        staging.rename(tree)


