#!/usr/bin/env python3
"""Baked container images, measured in one run: what baking adds to the image and the build, and first boot.

  1. build A: the k8s-1.17-debian12 profile from the stand-ins (its kubeadm and Weave images baked)
  2. build B: the same profile with one more image in images.extra: a 64 MiB incompressible stand-in image
     (so the qcow2 growth per image can be read against that image's compressed size)
  3. first boot of A under TCG with no route out (`invoke up --air-gapped`, a control plane only) until
     bootstrap-success

Prints the qcow2 size added by the extra image against its compressed size (target <= 1.1x), the build
time each of A and B spent copying and baking images, and the time to bootstrap-success. Both builds skip
the booted suite. First boot *without* baked images cannot be measured here: the stand-in CRI-O has no
network and cannot pull (the real one would pull ~200 MiB from registries), so that figure is not printed.

    .venv/bin/python bench/images_bench.py [--keep DIR] [--base DIR]
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from common import PROFILE, REPO, bench_options, bench_setup, invoke, link_base, manifest

import tests.standins.make_standins as standins
from tests.standins.registry import push_images

EXTRA = "registry.example.org/nodeimage-bench/payload:64m"
EXTRA_BYTES = 64 << 20


def add_extra_image(lock: Path, images: Path, registry: str) -> int:
    """Write, push and lock the extra image; return its compressed size (config + layers) for amd64."""
    registry_host, _, path = EXTRA.rsplit(":", 1)[0].partition("/")
    layout = images.parent / "extra-images" / registry_host / path
    standins.IMAGE_PAYLOAD = EXTRA_BYTES
    built = standins.standin_image(EXTRA, layout)
    push_images(images.parent / "extra-images", registry)
    digest, size = built["linux/amd64"]
    data = yaml.safe_load(lock.read_text())
    data["images"][EXTRA] = {"platforms": {"linux/amd64": {"digest": digest, "digest_source": "trust-on-first-use",
                                                           "size": size}}}  # fmt: skip
    lock.write_text(yaml.safe_dump(data, sort_keys=False))
    return size


def main() -> None:
    opts, work = bench_options(__doc__, "nodeimage-images-bench-")
    with bench_setup(work) as b:
        extra_size = add_extra_image(b.lock, standins.images_dir(b.lock), b.registry)
        profile = yaml.safe_load((REPO / "profiles" / f"{PROFILE}.yaml").read_text())
        profile.setdefault("images", {})["extra"] = [EXTRA]
        profile_b = work / f"{PROFILE}-extra.yaml"
        profile_b.write_text(yaml.safe_dump(profile, sort_keys=False))
        out_a, out_b = work / "a", work / "b"
        link_base(out_a, opts.base)
        link_base(out_b, opts.base)
        build_a, _ = invoke(b.build_args(out_a, "--skip-suite"), b.env)
        args_b = [a if a != PROFILE else str(profile_b) for a in b.build_args(out_b, "--skip-suite")]
        build_b, _ = invoke(args_b, b.env)
        m_a, m_b = manifest(out_a / PROFILE), manifest(out_b / PROFILE)
        qcow2_a = (out_a / PROFILE / "node.qcow2").stat().st_size
        qcow2_b = (out_b / PROFILE / "node.qcow2").stat().st_size
        started = time.monotonic()
        invoke(["up", f"--image={out_a / PROFILE / 'node.qcow2'}", f"--profile={PROFILE}", "--workers=0",
                "--air-gapped", f"--state-dir={work / 'clusters'}", "--cluster=bench"], b.env)  # fmt: skip
        first_boot = time.monotonic() - started
        invoke(["down", f"--state-dir={work / 'clusters'}", "--cluster=bench"], b.env)
    baked = sum(int(i["size"] or 0) for i in m_a["images"])  # type: ignore[union-attr,index]
    added = qcow2_b - qcow2_a
    print(f"nodeimage baked images ({PROFILE}, stand-ins, accelerator {m_a['accelerator'] or 'cache'})")
    print(f"  build A: {len(m_a['images'])} images baked ({baked / 2**20:.1f} MiB compressed), "  # type: ignore[arg-type]
          f"qcow2 {qcow2_a / 2**20:.0f} MiB, build {build_a:.0f} s")  # fmt: skip
    for name, m in (("A", m_a), ("B", m_b)):
        phases = m["phases"]  # type: ignore[index]
        print(f"  build {name}: copying images {phases.get('images', 0):.1f} s, baking {phases.get('bake', 0):.1f} s")
    print(f"  extra image: {extra_size / 2**20:.1f} MiB compressed; qcow2 grew {added / 2**20:.1f} MiB: "
          f"ratio {added / extra_size:.2f}   target <= 1.10")
    print(f"  build B (one more image, layers reused) {build_b:.0f} s")
    print(f"  first boot to bootstrap-success, no route out, baked images: {first_boot:.0f} s (TCG)")
    print("  first boot without baked images: not measurable here (the stand-in CRI-O cannot pull)")
    if not opts.keep:
        print(f"  (work directory {work} can be removed)")


if __name__ == "__main__":
    main()
