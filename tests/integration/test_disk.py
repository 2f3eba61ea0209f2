"""nodeimage.disk against the real tools: mkfs.ext4, debugfs, grub-mkimage, qemu-img, sfdisk, mount.

No VM is booted; every test runs in seconds. Needs root (file owners,
device nodes, loop mounts), as the image build itself does.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from nodeimage import disk
from nodeimage.disk.normalise import open_tree
from nodeimage.disk.writer import tree_to_disk_bytes
from nodeimage.fsutil import file_sha256
from nodeimage.log import NodeimageError

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: file owners, device nodes and loop mounts"),
    pytest.mark.skipif(
        not all(shutil.which(p) for p in ("mkfs.ext4", "debugfs", "grub-mkimage", "qemu-img", "sfdisk")),
        reason="needs e2fsprogs, grub-common, grub-pc-bin, qemu-utils and fdisk",
    ),
]

FS_UUID = "3f0b8f3e-6c47-4c4e-8d7a-2a7f1f1d0c01"
EPOCH = 1686355200  # older than any file the tests create, so every mtime is clamped


def _populate(root: Path) -> None:
    (root / "boot").mkdir(parents=True)
    (root / "boot" / "vmlinuz-6.1.0-9-amd64").write_bytes(b"old kernel")
    (root / "boot" / "vmlinuz-6.1.0-10-amd64").write_bytes(b"new kernel")
    (root / "boot" / "initrd.img-6.1.0-10-amd64").write_bytes(b"initrd")
    etc = root / "etc"
    etc.mkdir()
    (etc / "hostname").write_text("node\n")
    (etc / 'with space "quoted"').write_text("odd name\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    os.chmod(etc / "shadow", 0o640)
    os.chown(etc / "shadow", 0, 42)
    os.link(etc / "hostname", etc / "hostname.hardlink")
    os.symlink("hostname", etc / "hostname.symlink")
    os.symlink("/nonexistent/target", etc / "dangling")
    bin_ = root / "usr" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "su").write_bytes(b"#!/bin/sh\nexit 0\n")
    os.chmod(bin_ / "su", 0o4755)
    (bin_ / "ping").write_bytes(b"#!/bin/sh\nexit 0\n")
    os.chmod(bin_ / "ping", 0o755)
    if shutil.which("setcap"):
        subprocess.run(["setcap", "cap_net_raw+ep", str(bin_ / "ping")], check=True)
    os.setxattr(etc / "hostname", "user.nodeimage", b"kept")
    home = root / "home" / "user"
    home.mkdir(parents=True)
    (home / "notes").write_text("mine\n")
    os.chown(home, 1000, 1000)
    os.chown(home / "notes", 1000, 1000)
    os.mknod(root / "etc" / "fifo", 0o600 | stat.S_IFIFO)
    (root / "dev").mkdir()
    os.mknod(root / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    with (root / "var.img").open("wb") as fh:  # sparse: 4 KiB of data in 8 MiB
        fh.seek(4 * 1024**2)
        fh.write(b"x" * 4096)
        fh.truncate(8 * 1024**2)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    _populate(root)
    return root


@pytest.fixture
def image(tree: Path, tmp_path: Path) -> Path:
    out = tmp_path / "disk.qcow2"
    disk.tree_to_disk(tree, out, size_gib=1, fs_uuid=FS_UUID, hash_seed=disk.derive_hash_seed(FS_UUID), epoch=EPOCH)
    return out


def _build(tree: Path, out: Path, fs_uuid: str = FS_UUID) -> Path:
    disk.tree_to_disk(tree, out, size_gib=1, fs_uuid=fs_uuid, hash_seed=disk.derive_hash_seed(fs_uuid), epoch=EPOCH)
    return out


def _raw(image: Path, tmp_path: Path) -> Path:
    raw = tmp_path / f"{image.stem}.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True)
    return raw


def test_same_tree_gives_identical_bytes(tree: Path, tmp_path: Path) -> None:
    first = _build(tree, tmp_path / "a.qcow2")
    # A copy of the tree has other inode numbers, ctimes, atimes and holes: the disk must not care.
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", "--sparse=never", str(tree), str(copy)], check=True)
    os.utime(copy / "etc" / "hostname")  # newer than the epoch: clamped
    second = _build(copy, tmp_path / "b.qcow2")
    assert file_sha256(first) == file_sha256(second)


def test_other_uuid_gives_other_bytes(tree: Path, tmp_path: Path) -> None:
    first = _build(tree, tmp_path / "a.qcow2")
    other = _build(tree, tmp_path / "b.qcow2", fs_uuid="3f0b8f3e-6c47-4c4e-8d7a-2a7f1f1d0c02")
    assert file_sha256(first) != file_sha256(other)


def test_qemu_img_check_passes(image: Path) -> None:
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(image)], check=True,
                                     capture_output=True).stdout)  # fmt: skip
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == 1024**3
    subprocess.run(["qemu-img", "check", str(image)], check=True, capture_output=True)


def test_mbr_has_grub_and_one_bootable_partition_at_1mib(image: Path, tmp_path: Path) -> None:
    raw = _raw(image, tmp_path)
    mbr = raw.read_bytes()[:512]
    assert mbr[510:] == b"\x55\xaa"
    boot_img = (disk.GRUB_DIR / "boot.img").read_bytes()
    assert mbr[:0x66] == boot_img[:0x66]
    assert mbr[0x68:440] == boot_img[0x68:440]
    table = json.loads(subprocess.run(["sfdisk", "--json", str(raw)], check=True, capture_output=True).stdout)
    parts = table["partitiontable"]["partitions"]
    assert table["partitiontable"]["label"] == "dos"
    assert len(parts) == 1
    assert parts[0]["start"] == 2048
    assert parts[0]["type"] == "83"
    assert parts[0].get("bootable") is True
    assert parts[0]["start"] + parts[0]["size"] == 1024**3 // 512
    # core.img sits right after the MBR, where boot.img looks for it
    core = raw.read_bytes()[512:1024]
    assert core != bytes(512)


def test_filesystem_is_clean_and_labelled(image: Path, tmp_path: Path) -> None:
    raw = _raw(image, tmp_path)
    dev = f"{raw}?offset={disk.PART_OFFSET}"
    subprocess.run(["e2fsck", "-f", "-n", dev], check=True, capture_output=True)
    header = subprocess.run(["dumpe2fs", "-h", dev], check=True, capture_output=True, text=True).stdout
    assert f"Filesystem UUID:          {FS_UUID}" in header
    assert "Filesystem volume name:   rootfs" in header
    assert disk.read_fs_uuid(image) == FS_UUID
    assert disk.read_fs_label(image) == "rootfs"


def test_no_write_history_in_any_superblock(image: Path, tmp_path: Path) -> None:
    """mkfs's "lifetime writes" varies with the host's tree layout: every superblock copy must read zero."""
    raw = _raw(image, tmp_path)
    dev = f"{raw}?offset={disk.PART_OFFSET}"
    for extra in ([], ["-o", "superblock=32768", "-o", "blocksize=4096"]):
        header = subprocess.run(["dumpe2fs", *extra, "-h", dev], check=True, capture_output=True, text=True,
                                env={**os.environ, "TZ": "UTC", "LC_ALL": "C"}).stdout  # fmt: skip
        assert "Filesystem UUID" in header
        assert "Lifetime writes" not in header, extra
        assert f"Filesystem created:       {time.strftime('%c', time.gmtime(EPOCH))}" in header


def test_inode_times_are_the_epoch(image: Path, tmp_path: Path) -> None:
    raw = _raw(image, tmp_path)
    out = subprocess.run(["debugfs", "-R", "stat /etc/hostname.symlink", f"{raw}?offset={disk.PART_OFFSET}"],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    assert "Type: symlink" in out
    times = [line for line in out.splitlines() if "time:" in line]
    assert len(times) == 4
    assert all(f"0x{EPOCH:08x}" in line for line in times), times


def test_grub_cfg_boots_newest_kernel_by_uuid(tree: Path, image: Path) -> None:
    cfg = (tree / "boot" / "grub" / "grub.cfg").read_text()
    assert f"linux /boot/vmlinuz-6.1.0-10-amd64 root=UUID={FS_UUID} ro" in cfg
    assert "initrd /boot/initrd.img-6.1.0-10-amd64" in cfg
    assert "console=ttyS0,115200" in cfg
    assert disk.read_file(image, "/boot/grub/grub.cfg").decode() == cfg


def test_kernel_arguments_reach_grub_cfg(tree: Path, tmp_path: Path) -> None:
    """The stack's kernel arguments (the cgroup layout) are on the command line, also when a grub.cfg naming
    the same UUID was already there (as in a base image)."""
    _build(tree, tmp_path / "a.qcow2")
    disk.tree_to_disk(tree, tmp_path / "b.qcow2", size_gib=1, fs_uuid=FS_UUID, hash_seed=disk.derive_hash_seed(FS_UUID),
                      epoch=EPOCH, kernel_args=["systemd.unified_cgroup_hierarchy=0"])  # fmt: skip
    cfg = disk.read_file(tmp_path / "b.qcow2", "/boot/grub/grub.cfg").decode()
    assert "console=ttyS0,115200 net.ifnames=0 systemd.unified_cgroup_hierarchy=0" in cfg


def test_normalise_adds_kernel_arguments(image: Path, tmp_path: Path) -> None:
    out = tmp_path / "n.qcow2"
    with open_tree(image, out, epoch=EPOCH, kernel_args=["systemd.unified_cgroup_hierarchy=0"]):
        pass
    assert "systemd.unified_cgroup_hierarchy=0" in disk.read_file(out, "/boot/grub/grub.cfg").decode()


def test_a_failed_block_writes_no_image(image: Path, tmp_path: Path) -> None:
    out = tmp_path / "n.qcow2"
    with pytest.raises(RuntimeError), open_tree(image, out, epoch=EPOCH):
        raise RuntimeError("a layer failed")
    assert not out.exists() and list(tmp_path.glob(".nodeimage-norm-*")) == []


def test_grub_cfg_prefers_vmlinuz_link(tree: Path) -> None:
    (tree / "vmlinuz").symlink_to("boot/vmlinuz-6.1.0-9-amd64")
    cfg = disk.write_grub_cfg(tree, FS_UUID).read_text()
    assert f"linux /vmlinuz root=UUID={FS_UUID}" in cfg
    assert "initrd" not in cfg  # no /initrd.img link beside it


def test_tree_without_kernel_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty" / "etc").mkdir(parents=True)
    with pytest.raises(NodeimageError, match="no kernel"):
        _build(tmp_path / "empty", tmp_path / "x.qcow2")
    assert not (tmp_path / "x.qcow2").exists()


def test_failed_build_leaves_nothing(tree: Path, tmp_path: Path) -> None:
    (tree / "big").write_bytes(os.urandom(1024) * 1024 * 80)  # 80 MiB into a 1 GiB disk is fine...
    out = tmp_path / "out" / "x.qcow2"
    with pytest.raises(NodeimageError, match="bigger"):
        tree_to_disk_bytes(tree, out, size=70 * 1024**2, fs_uuid=FS_UUID, hash_seed=FS_UUID, epoch=EPOCH,
                           label="rootfs")  # fmt: skip  # ...but not into 70 MiB
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fs_uuid": "not-a-uuid"}, "filesystem UUID is not a UUID: 'not-a-uuid'"),
        ({"hash_seed": "zz"}, "hash seed is not a UUID"),
        ({"size_gib": 0}, "at least 1 GiB"),
        ({"label": "a-label-longer-than-16"}, "longer than 16 bytes"),
    ],
)
def test_bad_parameters_are_named(tree: Path, tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"size_gib": 1, "fs_uuid": FS_UUID, "hash_seed": FS_UUID, "epoch": EPOCH, **kwargs}
    with pytest.raises(NodeimageError, match=message):
        disk.tree_to_disk(tree, tmp_path / "x.qcow2", **args)  # type: ignore[arg-type]


def test_disk_to_tree_round_trips_metadata(tree: Path, image: Path, tmp_path: Path) -> None:
    back = tmp_path / "back"
    disk.disk_to_tree(image, back)
    assert not (back / "lost+found").exists()
    shadow = (back / "etc" / "shadow").stat()
    assert (shadow.st_uid, shadow.st_gid, stat.S_IMODE(shadow.st_mode)) == (0, 42, 0o640)
    assert stat.S_IMODE((back / "usr" / "bin" / "su").stat().st_mode) == 0o4755
    assert stat.S_IMODE((back / "tmp").stat().st_mode) == 0o1777
    notes = (back / "home" / "user" / "notes").stat()
    assert (notes.st_uid, notes.st_gid) == (1000, 1000)
    assert os.readlink(back / "etc" / "hostname.symlink") == "hostname"
    assert os.readlink(back / "etc" / "dangling") == "/nonexistent/target"
    assert (back / "etc" / "hostname").stat().st_ino == (back / "etc" / "hostname.hardlink").stat().st_ino
    assert (back / "etc" / "hostname").stat().st_nlink == 2
    assert os.getxattr(back / "etc" / "hostname", "user.nodeimage") == b"kept"
    assert stat.S_ISFIFO((back / "etc" / "fifo").lstat().st_mode)
    null = (back / "dev" / "null").lstat()
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1 and os.minor(null.st_rdev) == 3
    assert (back / "etc" / 'with space "quoted"').read_text() == "odd name\n"
    assert (back / "etc" / "hostname").stat().st_mtime == EPOCH
    if shutil.which("getcap"):
        caps = subprocess.run(["getcap", str(back / "usr" / "bin" / "ping")], capture_output=True, text=True).stdout
        assert "cap_net_raw=ep" in caps


def test_disk_to_tree_refuses_non_empty_target(image: Path, tmp_path: Path) -> None:
    target = tmp_path / "full"
    target.mkdir()
    (target / "x").write_text("")
    with pytest.raises(NodeimageError, match="not empty"):
        disk.disk_to_tree(image, target)


def test_read_file(image: Path) -> None:
    assert disk.read_file(image, "/etc/hostname") == b"node\n"
    assert disk.read_file(image, '/etc/with space "quoted"') == b"odd name\n"
    with pytest.raises(NodeimageError, match="not found"):
        disk.read_file(image, "/etc/missing")
    with pytest.raises(NodeimageError, match="not a regular file"):
        disk.read_file(image, "/etc/hostname.symlink")
    with pytest.raises(NodeimageError, match="absolute"):
        disk.read_file(image, "etc/hostname")


def _gpt_disk(tmp_path: Path) -> Path:
    """A GPT disk laid out like Ubuntu's cloud images: root (Linux fs) first, BIOS boot and EFI after."""
    raw = tmp_path / "gpt.raw"
    with raw.open("wb") as fh:
        fh.truncate(96 * 1024**2)
    layout = b"label: gpt\nstart=2048, size=120832, type=L\nsize=8192, type=21686148-6449-6E6F-744E-656564454649\n,,U\n"
    subprocess.run(["sfdisk", "--quiet", str(raw)], input=layout, check=True)
    tree = tmp_path / "gpt-tree"
    (tree / "var/log").mkdir(parents=True)
    (tree / "var/log/wtmp").write_bytes(b"shutdown record")
    (tree / "etc").mkdir()
    (tree / "etc/hostname").write_text("gpt\n")
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-d", str(tree), "-E", f"offset={2048 * 512}", str(raw), f"{120832 // 2}k"],
        check=True,
    )
    return raw


def test_gpt_root_partition_is_found(tmp_path: Path) -> None:
    raw = _gpt_disk(tmp_path)
    part = disk.read_partition(raw)
    assert (part.table, part.offset, part.size) == ("gpt", 2048 * 512, 120832 * 512)
    assert disk.read_file(raw, "/etc/hostname") == b"gpt\n"


def test_gpt_disk_is_prepared_in_place(tmp_path: Path) -> None:
    raw = _gpt_disk(tmp_path)
    seen: list[bytes] = []

    def prepare(root: Path) -> None:
        seen.append((root / "etc/hostname").read_bytes())
        (root / "var/log/wtmp").write_bytes(b"")

    out = tmp_path / "out.qcow2"
    with open_tree(raw, out, epoch=EPOCH) as root:
        prepare(root)
    assert seen == [b"gpt\n"]
    assert disk.read_file(out, "/var/log/wtmp") == b""
    assert disk.read_partition(out).table == "gpt"  # the layout (BIOS boot, EFI) is kept
    assert subprocess.run(["qemu-img", "check", str(out)], capture_output=True).returncode == 0


def test_gpt_without_linux_partition_is_refused(tmp_path: Path) -> None:
    raw = tmp_path / "efi-only.raw"
    with raw.open("wb") as fh:
        fh.truncate(16 * 1024**2)
    subprocess.run(["sfdisk", "--quiet", str(raw)], input=b"label: gpt\n,,U\n", check=True)
    with pytest.raises(NodeimageError, match="without a Linux filesystem partition"):
        disk.read_partition(raw)


def test_normalise_undoes_a_booted_write(image: Path, tmp_path: Path) -> None:
    """A filesystem mounted read-write, changed and changed back normalises to the original bytes."""
    raw = _raw(image, tmp_path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-o", f"loop,offset={disk.PART_OFFSET}", str(raw), str(mnt)], check=True)
    try:
        (mnt / "etc" / "scratch").write_bytes(os.urandom(1 << 20))
        (mnt / "etc" / "hostname").write_text("changed\n")
        (mnt / "etc" / "scratch").unlink()
        (mnt / "etc" / "hostname").write_text("node\n")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    written = tmp_path / "written.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(written)], check=True)
    assert file_sha256(written) != file_sha256(image)

    normalised = tmp_path / "normalised.qcow2"
    with open_tree(written, normalised, epoch=EPOCH):
        pass
    assert file_sha256(normalised) == file_sha256(image)


def test_normalise_keeps_changed_content_different(image: Path, tmp_path: Path) -> None:
    raw = _raw(image, tmp_path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-o", f"loop,offset={disk.PART_OFFSET}", str(raw), str(mnt)], check=True)
    try:
        (mnt / "etc" / "hostname").write_text("other\n")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    normalised = tmp_path / "normalised.qcow2"
    with open_tree(raw, normalised, epoch=EPOCH):
        pass
    assert file_sha256(normalised) != file_sha256(image)
    assert disk.read_file(normalised, "/etc/hostname") == b"other\n"
    assert disk.read_fs_uuid(normalised) == FS_UUID
    assert disk.virtual_size(normalised) == 1024**3
