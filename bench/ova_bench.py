"""How much the OVA step costs beyond the conversion it cannot avoid.

Times ``nodeimage.ova.write_ova`` against a bare ``qemu-img convert -O vmdk
-o subformat=streamOptimized`` plus ``tar`` of the same disk, alternating the
two in one run and keeping each one's best time, and prints their ratio
(target <= 1.1) and the OVA's size against the qcow2's. Nothing is asserted:
the machine is shared, so the numbers are for reading.

    .venv/bin/python bench/ova_bench.py                     # a generated 512 MiB disk
    .venv/bin/python bench/ova_bench.py --image build/k8s-1.17/node.qcow2 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nodeimage.ova import write_ova  # noqa: E402


def make_disk(tmp: Path, mib: int) -> Path:
    """A qcow2 with an ext4 filesystem holding compressible text and incompressible noise, like a real image."""
    tree = tmp / "tree"
    tree.mkdir()
    text = b"".join(f"line {i}: kubelet crio kata weave\n".encode() for i in range(100_000))
    filled = 0
    budget = mib * 1024 * 1024 // 2  # half full
    i = 0
    while filled < budget:
        data = text if i % 2 else os.urandom(4 * 1024 * 1024)
        (tree / f"f{i:04d}").write_bytes(data)
        filled += len(data)
        i += 1
    raw = tmp / "disk.raw"
    with raw.open("wb") as fh:
        fh.truncate(mib * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(raw)], check=True)
    image = tmp / "node.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(image)], check=True)
    raw.unlink()
    return image


def bare(image: Path, tmp: Path) -> float:
    """The unavoidable work: convert to streamOptimized VMDK and tar it."""
    work = tmp / "bare"
    work.mkdir()
    start = time.monotonic()
    subprocess.run(
        ["qemu-img", "convert", "-q", "-f", "qcow2", "-O", "vmdk", "-o", "subformat=streamOptimized",
         str(image), str(work / "disk.vmdk")],
        check=True,
    )  # fmt: skip
    subprocess.run(["tar", "-cf", str(tmp / "bare.tar"), "-C", str(work), "disk.vmdk"], check=True)
    elapsed = time.monotonic() - start
    (work / "disk.vmdk").unlink()
    work.rmdir()
    (tmp / "bare.tar").unlink()
    return elapsed


def ova(image: Path, tmp: Path) -> tuple[float, int]:
    out = tmp / "node.ova"
    start = time.monotonic()
    write_ova(image, out, name="bench", cpus=2, memory_mib=2048, product={"profile": "bench"}, epoch=1609459200)
    elapsed = time.monotonic() - start
    size = out.stat().st_size
    out.unlink()
    return elapsed, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, help="a qcow2 to use (default: generate one)")
    parser.add_argument("--size-mib", type=int, default=512, help="size of the generated disk")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each is kept")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ova-bench-", dir=os.environ.get("TMPDIR")) as tmp_name:
        tmp = Path(tmp_name)
        image = args.image or make_disk(tmp, args.size_mib)
        bare_times, ova_times, ova_size = [], [], 0
        for _ in range(args.rounds):
            bare_times.append(bare(image, tmp))
            t, ova_size = ova(image, tmp)
            ova_times.append(t)
        qcow2_size = image.stat().st_size
        b, o = min(bare_times), min(ova_times)
        print(f"disk: {image} ({qcow2_size / 2**20:.1f} MiB qcow2), {args.rounds} rounds, best of each")
        print(f"bare qemu-img convert + tar: {b:.2f} s   (all: {', '.join(f'{x:.2f}' for x in bare_times)})")
        print(f"write_ova:                   {o:.2f} s   (all: {', '.join(f'{x:.2f}' for x in ova_times)})")
        print(f"time ratio OVA / bare:       {o / b:.3f}   (target <= 1.1)")
        print(f"size ratio OVA / qcow2:      {ova_size / qcow2_size:.3f}   ({ova_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
