"""Reproducible BIOS-bootable disks from a root file tree, and back.

These machines have loop devices but no partition nodes and no
device-mapper, so the disk is assembled as one raw file: ``mkfs.ext4 -d``
fills the filesystem at a 1 MiB offset, GRUB's ``boot.img`` goes into the
MBR and ``core.img`` (with an ``(hd0,msdos1)`` prefix) into the gap after
it, and the result is converted to qcow2.

Reproducible means the same tree and parameters give the same bytes:
the filesystem UUID and directory hash seed are fixed, the feature set comes
from our own mke2fs.conf (not the host's), e2fsprogs' clock is pinned with
``E2FSPROGS_FAKE_TIME`` (1.47.0 ignores SOURCE_DATE_EPOCH) and the inode
times that ``mkfs -d`` copies from the tree are rewritten with ``debugfs``:
atime, ctime = epoch, mtime clamped to the epoch.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nodeimage.fsutil import atomic_path
from nodeimage.log import debug, die, step, warn
from nodeimage.run import output, run, which

# Bump when a change here changes the bytes of the disks made (base images key their cache on it).
FORMAT_VERSION = 3
SECTOR = 512
PART_OFFSET = 1024 * 1024  # first partition starts at 1 MiB, the usual alignment
BLOCK_SIZE = 4096
GRUB_DIR = Path("/usr/lib/grub/i386-pc")
GRUB_MODULES = [
    *("biosdisk", "part_msdos", "ext2", "normal", "linux", "configfile", "search", "search_fs_uuid"),
    *("serial", "terminal", "echo", "test", "boot"),
]
KERNEL_CMDLINE = "ro console=tty0 console=ttyS0,115200 net.ifnames=0"

# Pinned so the filesystem does not change with the host's /etc/mke2fs.conf.
# These features are all readable by GRUB 2.04+ and Linux 5.4+.
MKE2FS_CONF = """\
[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384
[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
"""

# Namespace for deriving a directory hash seed from a filesystem UUID.
_HASH_SEED_NS = uuid.UUID("6a0e9f3c-3c1e-4d55-9a8b-6e6f6465696d")


@dataclass(frozen=True)
class Partition:
    """The root partition of a disk, in bytes: an msdos disk's only partition, or a GPT disk's
    (largest) Linux filesystem partition, as on Ubuntu's cloud images."""

    offset: int
    size: int
    type: int
    table: str = "msdos"


# --- building --------------------------------------------------------------------------------------


def tree_to_disk(
    tree: Path,
    out_qcow2: Path,
    *,
    size_gib: int,
    fs_uuid: str,
    hash_seed: str,
    epoch: int,
    label: str = "rootfs",
) -> None:
    """Make a BIOS-bootable qcow2 whose single ext4 partition holds ``tree``.

    Writes ``/boot/grub/grub.cfg`` into the tree unless it already has one
    naming ``fs_uuid``. Nothing appears at ``out_qcow2`` unless it succeeds.
    """
    if size_gib < 1:
        die(f"disk size must be at least 1 GiB, got {size_gib}")
    _tree_to_disk_bytes(
        Path(tree),
        Path(out_qcow2),
        size=size_gib * 1024**3,
        fs_uuid=fs_uuid,
        hash_seed=hash_seed,
        epoch=epoch,
        label=label,
    )


def _tree_to_disk_bytes(
    tree: Path, out_qcow2: Path, *, size: int, fs_uuid: str, hash_seed: str, epoch: int, label: str
) -> None:
    fs_uuid = _check_uuid(fs_uuid, "filesystem UUID")
    hash_seed = _check_uuid(hash_seed, "hash seed")
    if not tree.is_dir():
        die(f"root tree is not a directory: {tree}")
    if epoch < 0 or epoch >= 2**32:
        die(f"epoch must be a Unix time between 0 and 2^32-1, got {epoch}")
    if len(label.encode()) > 16:
        die(f"filesystem label {label!r} is longer than 16 bytes")
    if size % BLOCK_SIZE or size <= PART_OFFSET + 64 * 1024**2:
        die(f"disk size must be a multiple of {BLOCK_SIZE} bytes and above 65 MiB, got {size}")
    for prog, pkg in (("mkfs.ext4", "e2fsprogs"), ("debugfs", "e2fsprogs"), ("qemu-img", "qemu-utils")):
        which(prog, pkg)
    which("grub-mkimage", "grub-common")
    if not (GRUB_DIR / "boot.img").is_file():
        die(f"GRUB's BIOS boot image is missing: {GRUB_DIR / 'boot.img'}", hint="apt-get install grub-pc-bin")

    write_grub_cfg(tree, fs_uuid)
    out_qcow2.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".nodeimage-disk-", dir=out_qcow2.parent) as tmp_name:
        tmp = Path(tmp_name)
        raw = tmp / "disk.raw"
        with step(f"Making ext4 filesystem from {tree} ({size // 1024**2} MiB disk)"):
            _make_fs(tree, raw, tmp, size=size, fs_uuid=fs_uuid, hash_seed=hash_seed, epoch=epoch, label=label)
        with step("Installing GRUB (BIOS) boot code"):
            _install_grub(raw, tmp, size=size, fs_uuid=fs_uuid)
        with step(f"Converting to qcow2: {out_qcow2}"), atomic_path(out_qcow2, mode=0o644) as part:
            run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, part], capture=True)


def derive_hash_seed(fs_uuid: str) -> str:
    """A directory hash seed that depends only on the filesystem UUID."""
    return str(uuid.uuid5(_HASH_SEED_NS, _check_uuid(fs_uuid, "filesystem UUID")))


def write_grub_cfg(tree: Path, fs_uuid: str) -> Path:
    """Write the tree's grub.cfg booting its kernel from ``fs_uuid`` (kept if it already names it)."""
    cfg = tree / "boot" / "grub" / "grub.cfg"
    if cfg.is_file() and fs_uuid in cfg.read_text(errors="replace"):
        debug(f"keeping {cfg}: it already boots UUID={fs_uuid}")
        return cfg
    kernel, initrd = find_kernel(tree)
    lines = [
        "# Written by nodeimage: boots the root filesystem below on serial and VGA console.",
        "serial --unit=0 --speed=115200",
        "terminal_input serial console",
        "terminal_output serial console",
        "set timeout=1",
        "set default=0",
        f"search --no-floppy --fs-uuid --set=root {fs_uuid}",
        'menuentry "Linux" {',
        f"\tlinux {kernel} root=UUID={fs_uuid} {KERNEL_CMDLINE}",
    ]
    if initrd:
        lines.append(f"\tinitrd {initrd}")
    lines.append("}")
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text("\n".join(lines) + "\n")
    cfg.chmod(0o644)
    return cfg


def find_kernel(tree: Path) -> tuple[str, str | None]:
    """Return the kernel and initrd paths (as seen from the tree's root) to boot.

    Prefers the ``/vmlinuz`` and ``/initrd.img`` links Debian and Ubuntu
    keep current across kernel upgrades; else the newest ``/boot/vmlinuz-*``.
    """
    if (tree / "vmlinuz").exists():
        initrd = "/initrd.img" if (tree / "initrd.img").exists() else None
        return "/vmlinuz", initrd
    kernels = sorted((tree / "boot").glob("vmlinuz-*"), key=lambda p: _version_key(p.name))
    if not kernels:
        die(
            f"no kernel in {tree}: neither /vmlinuz nor /boot/vmlinuz-* exists",
            hint="install a kernel package in the tree (Debian: linux-image-amd64, Ubuntu: linux-image-virtual)",
        )
    version = kernels[-1].name.removeprefix("vmlinuz-")
    initrd_path = tree / "boot" / f"initrd.img-{version}"
    return f"/boot/vmlinuz-{version}", f"/boot/initrd.img-{version}" if initrd_path.exists() else None


def _version_key(name: str) -> list[tuple[int, str]]:
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", name)]


def _check_uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        die(f"{what} is not a UUID: {value!r}", hint="use the form 1b4e28ba-2fa1-11d2-883f-0016d3cca427")


def _fs_env(tmp: Path, epoch: int) -> dict[str, str]:
    conf = tmp / "mke2fs.conf"
    conf.write_text(MKE2FS_CONF)
    return {**os.environ, "MKE2FS_CONFIG": str(conf), "E2FSPROGS_FAKE_TIME": str(epoch)}


def _make_fs(
    tree: Path, raw: Path, tmp: Path, *, size: int, fs_uuid: str, hash_seed: str, epoch: int, label: str
) -> None:
    with raw.open("wb") as fh:
        fh.truncate(size)
    env = _fs_env(tmp, epoch)
    blocks = (size - PART_OFFSET) // BLOCK_SIZE
    extended = f"offset={PART_OFFSET},hash_seed={hash_seed},root_owner=0:0,nodiscard"
    proc = run(
        ["mkfs.ext4", "-q", "-F", "-t", "ext4", "-b", str(BLOCK_SIZE), "-L", label, "-U", fs_uuid,
         "-E", extended, "-d", tree, raw, str(blocks)],
        env=env, capture=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        hint = "make the disk bigger" if "allocate" in err or "No space" in err else None
        die(f"mkfs.ext4 could not build a filesystem from {tree}:\n    {err[-1500:]}", hint=hint)
    cmds = tmp / "times.debugfs"
    with cmds.open("w") as fh:
        for line in _time_commands(tree, epoch):
            fh.write(line + "\n")
    run(["debugfs", "-w", "-f", cmds, f"{raw}?offset={PART_OFFSET}"], env=env, capture=True)
    # "Lifetime writes" counts what mkfs happened to write, which varies with how
    # the tree's files lie on the host. Zero it in a session that has written
    # nothing yet, and with close -a, in the backup superblocks too.
    reset = tmp / "reset.debugfs"
    reset.write_text("set_super_value kbytes_written 0\nclose_filesys -a\n")
    run(["debugfs", "-w", "-f", reset, f"{raw}?offset={PART_OFFSET}"], env=env, capture=True)
    # A read-only full check: catches a filesystem we or debugfs got wrong before anyone boots it.
    run(["e2fsck", "-f", "-n", f"{raw}?offset={PART_OFFSET}"], env=env, capture=True)


def _time_commands(tree: Path, epoch: int) -> Iterator[str]:
    """debugfs commands setting every copied inode's times: atime/ctime = epoch, mtime <= epoch."""
    for path in _walk(tree):
        rel = "/" + path.relative_to(tree).as_posix() if path != tree else "/"
        if "\n" in rel or "\r" in rel:
            die(f"file name with a line break cannot be made reproducible: {rel!r}")
        quoted = _dq(rel)
        mtime = min(int(path.lstat().st_mtime), epoch)
        for field, value in (("atime", epoch), ("ctime", epoch), ("mtime", mtime)):
            yield f"set_inode_field {quoted} {field} @{value}"
            yield f"set_inode_field {quoted} {field}_extra 0"


def _walk(tree: Path) -> Iterator[Path]:
    yield tree
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            yield base / name


def _install_grub(raw: Path, tmp: Path, *, size: int, fs_uuid: str) -> None:
    core = tmp / "core.img"
    run(
        ["grub-mkimage", "-O", "i386-pc", "-d", GRUB_DIR, "-o", core, "-p", "(hd0,msdos1)/boot/grub", *GRUB_MODULES],
        capture=True,
    )
    core_bytes = core.read_bytes()
    if len(core_bytes) > PART_OFFSET - SECTOR:
        die(f"GRUB core image is {len(core_bytes)} bytes, more than the {PART_OFFSET - SECTOR} before the partition")
    boot = bytearray((GRUB_DIR / "boot.img").read_bytes()[:440])
    # As grub-bios-setup does for hard disks: nop out the jump that would
    # ignore a BIOS-provided boot drive number below 0x80.
    boot[0x66:0x68] = b"\x90\x90"
    signature = uuid.UUID(fs_uuid).bytes[:4]
    table = _partition_entry(PART_OFFSET, size - PART_OFFSET) + bytes(48)
    mbr = bytes(boot) + signature + b"\0\0" + table + b"\x55\xaa"
    assert len(mbr) == SECTOR
    with raw.open("r+b") as fh:
        fh.write(mbr)
        fh.write(core_bytes)


def _partition_entry(offset: int, length: int) -> bytes:
    """One MBR entry: active, type 0x83 (Linux), with LBA and (capped) CHS addresses."""
    first, count = offset // SECTOR, length // SECTOR
    return struct.pack("<B3sB3sII", 0x80, _chs(first), 0x83, _chs(first + count - 1), first, count)


def _chs(lba: int) -> bytes:
    heads, sectors = 255, 63
    cyl, rem = divmod(lba, heads * sectors)
    if cyl > 1023:
        return b"\xfe\xff\xff"  # beyond CHS range: the conventional "use LBA" value
    head, sector = divmod(rem, sectors)
    return bytes([head, ((cyl >> 2) & 0xC0) | (sector + 1), cyl & 0xFF])


# --- reading ---------------------------------------------------------------------------------------


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


class _RawDisk:
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

    def __enter__(self) -> _RawDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def _mounted(disk: _RawDisk, mnt: Path, *, read_only: bool) -> Iterator[Path]:
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
    with tempfile.TemporaryDirectory(prefix="nodeimage-read-") as tmp_name, _RawDisk(qcow2, Path(tmp_name)) as disk:
        dest = Path(tmp_name) / "file"
        dev = f"{disk.raw}?offset={disk.part.offset}"
        stat = run(["debugfs", "-R", f"stat {_dq(path)}", dev], capture=True)
        text = stat.stdout.decode(errors="replace")
        if "Type: regular" not in text:
            kind = re.search(r"Type: (\w+)", text)
            die(f"{path} in {qcow2} is not a regular file ({kind.group(1) if kind else 'not found'})")
        run(["debugfs", "-R", f"dump {_dq(path)} {_dq(str(dest))}", dev], capture=True)
        if not dest.exists():
            die(f"could not read {path} from {qcow2}")
        return dest.read_bytes()


def _dq(arg: str) -> str:
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
    with step(f"Extracting the files of {qcow2}"), _RawDisk(qcow2, tree.parent) as disk:
        mnt = disk.tmp / "mnt"
        staging = disk.tmp / "tree"
        mnt.mkdir()
        staging.mkdir()
        with _mounted(disk, mnt, read_only=True):
            entries = sorted(p for p in mnt.iterdir() if p.name != "lost+found")
            if entries:
                run(["cp", "-a", "--preserve=mode,ownership,timestamps,links,xattr", *entries, staging], capture=True)
            shutil.copystat(mnt, staging)
            os.chown(staging, mnt.stat().st_uid, mnt.stat().st_gid)
        if tree.exists():
            tree.rmdir()
        staging.rename(tree)


def normalise_image(
    in_qcow2: Path, out_qcow2: Path, *, epoch: int, prepare: Callable[[Path], None] | None = None
) -> None:
    """Rebuild an image from its own files so equal content gives equal bytes.

    A filesystem written by a booted VM is not reproducible (inode
    allocation, journal, times); rebuilding from the file tree with the
    same UUID, a seed derived from it, clamped times and the same virtual
    size is. ``prepare`` is called with the extracted tree before the
    rebuild: the build scrubs shutdown residue from it and runs the
    un-booted image suite on it.
    """
    in_qcow2, out_qcow2 = Path(in_qcow2), Path(out_qcow2)
    if read_partition(in_qcow2).table == "gpt":
        _prepare_in_place(in_qcow2, out_qcow2, prepare)
        return
    fs_uuid = read_fs_uuid(in_qcow2)
    label = read_fs_label(in_qcow2)
    size = virtual_size(in_qcow2)
    with step(f"Normalising {in_qcow2} (UUID {fs_uuid})"):
        out_qcow2.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".nodeimage-norm-", dir=out_qcow2.parent) as tmp:
            tree = Path(tmp) / "tree"
            disk_to_tree(in_qcow2, tree)
            if prepare is not None:
                prepare(tree)
            _tree_to_disk_bytes(
                tree, out_qcow2, size=size, fs_uuid=fs_uuid, hash_seed=derive_hash_seed(fs_uuid), epoch=epoch,
                label=label or "rootfs",
            )  # fmt: skip


def _prepare_in_place(in_qcow2: Path, out_qcow2: Path, prepare: Callable[[Path], None] | None) -> None:
    """For a GPT disk (Ubuntu's cloud images: BIOS boot and EFI partitions beside the root), whose
    layout tree_to_disk cannot rebuild: call ``prepare`` on its mounted root filesystem, then
    convert. The filesystem keeps the booted build's allocation, so the qcow2 is not bit-reproducible."""
    warn(
        f"{in_qcow2} has a GPT layout: its filesystem is cleaned in place, not rebuilt from its file tree, "
        "so the qcow2 is not bit-for-bit reproducible"
    )
    which("mount", "mount")
    out_qcow2.parent.mkdir(parents=True, exist_ok=True)
    with step(f"Preparing {in_qcow2} in place (GPT)"), _RawDisk(in_qcow2, out_qcow2.parent) as disk:
        if prepare is not None:
            mnt = disk.tmp / "mnt"
            mnt.mkdir()
            with _mounted(disk, mnt, read_only=False):
                prepare(mnt)
        with atomic_path(out_qcow2, mode=0o644) as tmp:
            run(["qemu-img", "convert", "-q", "-O", "qcow2", disk.raw, tmp], capture=True)
