"""Reproducible BIOS-bootable disks from a root file tree.

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

import os
import re
import struct
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from nodeimage.disk.reader import PART_OFFSET, SECTOR, dq
from nodeimage.fsutil import atomic_path
from nodeimage.log import debug, die, step
from nodeimage.run import run, which

# Bump when a change here changes the bytes of the disks made (base images key their cache on it).
FORMAT_VERSION = 4
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
    kernel_args: Sequence[str] = (),
) -> None:
    """Make a BIOS-bootable qcow2 whose single ext4 partition holds ``tree``.

    Writes ``/boot/grub/grub.cfg`` into the tree (booting ``fs_uuid`` with
    ``kernel_args`` added to the command line). Nothing appears at
    ``out_qcow2`` unless it succeeds.
    """
    if size_gib < 1:
        die(f"disk size must be at least 1 GiB, got {size_gib}")
    tree_to_disk_bytes(
        Path(tree),
        Path(out_qcow2),
        size=size_gib * 1024**3,
        fs_uuid=fs_uuid,
        hash_seed=hash_seed,
        epoch=epoch,
        label=label,
        kernel_args=kernel_args,
    )


def tree_to_disk_bytes(
    tree: Path,
    out_qcow2: Path,
    *,
    size: int,
    fs_uuid: str,
    hash_seed: str,
    epoch: int,
    label: str,
    kernel_args: Sequence[str] = (),
) -> None:
    """:func:`tree_to_disk` with the size in bytes (normalise keeps the VM disk's exact size)."""
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

    for arg in kernel_args:
        if not re.fullmatch(r"[A-Za-z0-9_.,:/=+-]+", arg):
            die(f"kernel argument {arg!r} is not a plain token", hint="e.g. systemd.unified_cgroup_hierarchy=0")
    write_grub_cfg(tree, fs_uuid, kernel_args)
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


def write_grub_cfg(tree: Path, fs_uuid: str, kernel_args: Sequence[str] = ()) -> Path:
    """Write the tree's grub.cfg booting its kernel from ``fs_uuid`` with ``kernel_args`` added."""
    cfg = tree / "boot" / "grub" / "grub.cfg"
    kernel, initrd = find_kernel(tree)
    cmdline = " ".join([KERNEL_CMDLINE, *kernel_args])
    lines = [
        "# Written by nodeimage: boots the root filesystem below on serial and VGA console.",
        "serial --unit=0 --speed=115200",
        "terminal_input serial console",
        "terminal_output serial console",
        "set timeout=1",
        "set default=0",
        f"search --no-floppy --fs-uuid --set=root {fs_uuid}",
        'menuentry "Linux" {',
        f"\tlinux {kernel} root=UUID={fs_uuid} {cmdline}",
    ]
    if initrd:
        lines.append(f"\tinitrd {initrd}")
    lines.append("}")
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text("\n".join(lines) + "\n")
    cfg.chmod(0o644)
    debug(f"wrote {cfg}: linux {kernel} {cmdline}")
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
        quoted = dq(rel)
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


