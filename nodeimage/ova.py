"""OVA output: a qcow2 turned into a deterministic, importable OVF package.

The package is a ustar archive of ``<name>.ovf``, ``<name>.mf`` and
``<name>-disk1.vmdk``, in that order (DSP0243: descriptor first, manifest
next, then the files in References order). The same qcow2 and parameters
give the same bytes: qemu-img's VMDK writer puts a random CID in the
embedded descriptor, so the CID is replaced by one derived from the VMDK's
own content, the VMDK is written under its final member name (qemu-img
embeds it), and every tar header has fixed owner, mode and mtime.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import struct
import subprocess
import tarfile
import tempfile
from pathlib import Path

from nodeimage.fsutil import atomic_path, check_writable_dir
from nodeimage.log import NodeimageError, debug, die, info, progress, step
from nodeimage.ovf import OvfDisk, check_name, parse_manifest, render_manifest, render_ovf
from nodeimage.profiles import Profile, load_profile
from nodeimage.run import output, run, which

USTAR_MAX_SIZE = 8 * 1024**3 - 1  # 11 octal digits in the ustar size field
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
_CHUNK = 4 * 1024 * 1024
_VMDK_MAGIC = b"KDMV"
_CID_RE = re.compile(rb"\nCID=([0-9a-f]{1,8})\n")
_CID_PLACEHOLDER = b"00000000"


def write_ova(
    qcow2: Path,
    out_ova: Path,
    *,
    name: str,
    cpus: int,
    memory_mib: int,
    product: dict[str, str],
    epoch: int,
    guest_os: str = "ubuntu",
) -> None:
    """Write ``out_ova`` from ``qcow2``; nothing appears at ``out_ova`` unless it all succeeds.

    ``product`` holds ``profile``, optionally ``description``, and the
    component versions (see :func:`nodeimage.ovf.render_ovf`); ``epoch`` is
    the mtime of every archive member.
    """
    qcow2, out_ova = Path(qcow2), Path(out_ova)
    check_name(name)
    if not 0 <= epoch < 8**11:
        die(f"epoch {epoch} does not fit a tar header", hint="use a Unix time from 0 to 8589934591")
    if not qcow2.is_file():
        problem = "is a directory" if qcow2.is_dir() else "does not exist"
        die(f"the disk image {qcow2} {problem}", hint="give the node.qcow2 a build wrote (invoke build)")
    which("qemu-img", "qemu-utils")
    capacity, populated = disk_sizes(qcow2)
    vmdk_name = f"{name}-disk1.vmdk"
    check_writable_dir(out_ova.parent, "the OVA's directory")
    if out_ova.is_dir():
        die(f"the OVA {out_ova} is a directory", hint="give the path of the .ova file to write")
    with (
        step(f"Writing OVA {out_ova}"),
        tempfile.TemporaryDirectory(prefix=".nodeimage-ova-", dir=out_ova.parent) as tmp_name,
    ):
        # The final member name, because qemu-img writes it into the VMDK.
        vmdk = Path(tmp_name) / vmdk_name
        with step("Converting to a streamOptimized VMDK"):
            convert_to_vmdk(qcow2, vmdk, space=out_ova.parent)
        cid = fix_cid(vmdk)
        vmdk_size = vmdk.stat().st_size
        if vmdk_size > USTAR_MAX_SIZE:
            die(
                f"the VMDK of {qcow2} is {vmdk_size} bytes; a ustar OVA member is limited to {USTAR_MAX_SIZE} bytes",
                hint="make the image smaller (less content compresses to a smaller VMDK) or use the qcow2",
            )
        disk = OvfDisk(href=vmdk_name, file_size=vmdk_size, capacity=capacity, populated_size=populated)
        ovf = render_ovf(name=name, cpus=cpus, memory_mib=memory_mib, disk=disk, product=product, guest_os=guest_os)
        with step("Packing the OVA"), atomic_path(out_ova, mode=0o644) as part:
            pack_ova(part, name=name, ovf=ovf, vmdk=vmdk, epoch=epoch)
    info(f"OVA {out_ova}: {out_ova.stat().st_size} bytes, VMDK CID {cid}")


def disk_sizes(qcow2: Path) -> tuple[int, int]:
    """(virtual size, bytes holding data) of a qcow2, for ovf:capacity and ovf:populatedSize."""
    proc = run(["qemu-img", "info", "--output=json", "-f", "qcow2", qcow2], capture=True, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        die(f"{qcow2} is not a readable qcow2 image: {err}", hint="give the node.qcow2 a build wrote")
    capacity = int(json.loads(proc.stdout)["virtual-size"])
    extents = json.loads(output(["qemu-img", "map", "--output=json", "-f", "qcow2", qcow2]))
    populated = sum(int(e["length"]) for e in extents if e.get("data"))
    return capacity, populated


def convert_to_vmdk(qcow2: Path, vmdk: Path, every: float = 10.0, *, space: Path | None = None) -> None:
    """qemu-img's streamOptimized VMDK of ``qcow2`` (the one VMDK kind OVF importers take).

    The conversion compresses every cluster and takes about half a minute for
    a node image: its progress (qemu-img -p) is reported every ``every`` percent.
    """
    cmd = ["qemu-img", "convert", "-p", "-f", "qcow2", "-O", "vmdk",
           "-o", "subformat=streamOptimized,adapter_type=lsilogic", str(qcow2), str(vmdk)]  # fmt: skip
    debug("+ " + shlex.join(cmd))
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    shown = 0.0
    buffer = b""
    while chunk := proc.stdout.read1(4096):
        buffer += chunk
        *parts, buffer = re.split(rb"[\r\n]", buffer)
        for part in parts:
            m = re.search(rb"\((\d+(?:\.\d+)?)/100%\)", part)
            if m and float(m[1]) >= shown + every:
                shown = float(m[1]) // every * every
                progress("converting to VMDK", float(m[1]), 100, "%")
    err = proc.stderr.read().decode(errors="replace").strip()
    if proc.wait() != 0:
        die(f"qemu-img could not convert {qcow2} to a VMDK (exit {proc.returncode}): {err}",
            hint=f"is there space in {space or vmdk.parent}? (`df -h {space or vmdk.parent}`)")  # fmt: skip


def _descriptor_span(fh: io.BufferedRandom, path: Path) -> tuple[int, int]:
    """(offset, length) in bytes of the text descriptor embedded in a sparse VMDK."""
    header = fh.read(512)
    if header[:4] != _VMDK_MAGIC:
        die(f"{path} is not a sparse VMDK (no KDMV magic)")
    # SparseExtentHeader: magic, version, flags (u32), capacity, grainSize,
    # descriptorOffset, descriptorSize (u64, in sectors).
    desc_offset, desc_size = struct.unpack_from("<QQ", header, 28)
    if not desc_offset or not desc_size:
        die(f"{path} has no embedded descriptor")
    return desc_offset * 512, desc_size * 512


def fix_cid(vmdk: Path) -> str:
    """Replace qemu-img's random CID by the first 32 bits of the VMDK's SHA-256 (CID zeroed); return it."""
    with vmdk.open("r+b") as fh:
        offset, length = _descriptor_span(fh, vmdk)
        fh.seek(offset)
        region = fh.read(length)
        text = region.split(b"\0", 1)[0]
        # qemu-img prints the CID without leading zeros; ours always has 8 digits.
        if not _CID_RE.search(text):
            die(f"{vmdk}: no CID line in its embedded descriptor")

        def put(cid: bytes) -> None:
            new = _CID_RE.sub(b"\nCID=" + cid + b"\n", text, count=1)
            if len(new) > length:
                die(f"{vmdk}: the descriptor does not fit its {length}-byte region with an 8-digit CID")
            fh.seek(offset)
            fh.write(new + b"\0" * (length - len(new)))

        put(_CID_PLACEHOLDER)
        fh.flush()
        fh.seek(0)
        h = hashlib.sha256()
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
        cid = h.hexdigest()[:8]
        if cid == "ffffffff":  # means "no parent" in parentCID; keep the two apart
            cid = "fffffffe"
        put(cid.encode())
    return cid


def _header(name: str, size: int, epoch: int) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = epoch
    ti.mode = 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.type = tarfile.REGTYPE
    return ti.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")


def _pad(n: int) -> bytes:
    return b"\0" * (-n % _BLOCK)


def pack_ova(out: Path, *, name: str, ovf: bytes, vmdk: Path, epoch: int) -> None:
    """Write the ustar archive: .ovf, .mf, then the VMDK, hashing the VMDK while copying it.

    The manifest's length is known before the VMDK's digest is, so it is
    written with a placeholder and filled in once the copy is done: one pass
    over the disk instead of two.
    """
    ovf_name, mf_name, vmdk_name = f"{name}.ovf", f"{name}.mf", vmdk.name
    ovf_sha = hashlib.sha256(ovf).hexdigest()
    placeholder = render_manifest([(ovf_name, ovf_sha), (vmdk_name, "0" * 64)])
    vmdk_size = vmdk.stat().st_size
    with out.open("wb") as dst:
        dst.write(_header(ovf_name, len(ovf), epoch) + ovf + _pad(len(ovf)))
        dst.write(_header(mf_name, len(placeholder), epoch))
        mf_at = dst.tell()
        dst.write(placeholder + _pad(len(placeholder)))
        dst.write(_header(vmdk_name, vmdk_size, epoch))
        h = hashlib.sha256()
        copied = 0
        with vmdk.open("rb") as src:
            while chunk := src.read(_CHUNK):
                h.update(chunk)
                dst.write(chunk)
                copied += len(chunk)
        if copied != vmdk_size:
            die(f"{vmdk} changed size while it was packed ({vmdk_size} -> {copied} bytes)")
        dst.write(_pad(copied) + b"\0" * (2 * _BLOCK))
        dst.write(b"\0" * (-dst.tell() % _RECORD))  # whole records, as tar writes them
        manifest = render_manifest([(ovf_name, ovf_sha), (vmdk_name, h.hexdigest())])
        assert len(manifest) == len(placeholder)
        dst.seek(mf_at)
        dst.write(manifest)


def product_info(profile: Profile) -> dict[str, str]:
    """The ProductSection data of a :class:`nodeimage.profiles.Profile`: its name, description, components."""
    data = {"profile": profile.name}
    if profile.description:
        data["description"] = profile.description
    data.update(profile.components)
    return data


def source_date_epoch() -> int:
    """The build's SOURCE_DATE_EPOCH, so `invoke ova` on a built image matches the build's own OVA."""
    from nodeimage.config import parse_epoch

    return parse_epoch(os.environ.get("SOURCE_DATE_EPOCH"))


def ova_name(profile: Profile) -> str:
    """The OVA's VM name and member stem for a profile: nodeimage-<profile>."""
    return f"nodeimage-{profile.name}"


def write_profile_ova(
    image: Path,
    out: Path,
    profile: Profile,
    *,
    epoch: int,
    cpus: int | None = None,
    memory_mib: int | None = None,
) -> None:
    """:func:`write_ova` with name, shape, product and guest OS taken from ``profile``.

    `invoke build` and `invoke ova` both call this, so `invoke ova` on a
    built image reproduces the build's own OVA.
    """
    vm = profile.vm
    write_ova(
        Path(image),
        Path(out),
        name=ova_name(profile),
        cpus=cpus if cpus is not None else vm.cpus,
        memory_mib=memory_mib if memory_mib is not None else vm.memory_mib,
        product=product_info(profile),
        epoch=epoch,
        guest_os=profile.base.distro,
    )


def ova_from_profile(
    image: Path,
    *,
    profile_name: str,
    out: Path | None = None,
    cpus: int | None = None,
    memory_mib: int | None = None,
    epoch: int | None = None,
) -> Path:
    """`invoke ova`: CPU, memory, product and guest OS from the profile unless overridden; returns the OVA path.

    Without ``epoch`` the member mtime is the build's SOURCE_DATE_EPOCH: never
    the clock or the image's mtime, so the same image gives the same OVA.
    """
    profile = load_profile(profile_name)
    image = Path(image)
    out = Path(out) if out else image.with_suffix(".ova")
    write_profile_ova(
        image,
        out,
        profile,
        epoch=source_date_epoch() if epoch is None else epoch,
        cpus=cpus,
        memory_mib=memory_mib,
    )
    return out


def check_ova(path: Path) -> list[str]:
    """Problems inside an OVA: the .ovf not first, or a member missing from / not matching the .mf."""
    problems: list[str] = []
    digests: dict[str, str] = {}
    manifest: dict[str, str] | None = None
    names: list[str] = []
    try:
        with tarfile.open(path, mode="r:") as tf:
            for member in tf:
                names.append(member.name)
                fh = tf.extractfile(member)
                if fh is None:
                    problems.append(f"{path}: member {member.name} is not a regular file")
                    continue
                if member.name.endswith(".mf"):
                    data = fh.read()
                    digests[member.name] = hashlib.sha256(data).hexdigest()
                    try:
                        manifest = parse_manifest(data.decode(errors="replace"))
                    except NodeimageError as exc:
                        problems.append(f"{path}: {member.name}: {exc.message}")
                        manifest = {}
                    continue
                h = hashlib.sha256()
                while chunk := fh.read(4 * 1024 * 1024):
                    h.update(chunk)
                digests[member.name] = h.hexdigest()
    except tarfile.TarError as exc:
        return [f"{path}: not a readable tar archive: {exc}"]
    if not names or not names[0].endswith(".ovf"):
        problems.append(f"{path}: the first member must be the .ovf descriptor, found {names[:1]}")
    if manifest is None:
        return [*problems, f"{path}: no .mf manifest inside"]
    for name in names:
        if name.endswith(".mf"):
            continue
        if name not in manifest:
            problems.append(f"{path}: member {name} is not in the .mf manifest")
        elif manifest[name] != digests[name]:
            problems.append(f"{path}: member {name} has sha256 {digests[name]}, its .mf says {manifest[name]}")
    problems += [f"{path}: the .mf lists {n}, which the OVA lacks" for n in manifest if n not in digests]
    return problems
