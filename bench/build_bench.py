#!/usr/bin/env python3
"""Benchmark the build pipeline end to end on this machine and print the figures.

What it measures (targets are printed beside the figures, never asserted):
  - the e2e time: base (`invoke base`), build (packer + provision), boot +
    image suite, by phase, from build-manifest.json   target: under 10 min
  - a second `invoke build` with nothing changed      target: under 2 s
  - bytes downloaded by a second `invoke fetch`       target: 0
  - image size against base image + installed artifacts  target: <= 1.1x
  - peak memory of the build process itself (qemu and packer excluded)

It builds the k8s-1.17-debian12 profile from tests/standins (the upstream
hosts are unreachable here), exactly as the e2e test does.
Usage: .venv/bin/python bench/build_bench.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

from common import PROFILE, bench_setup, invoke


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="work directory to use and keep (default: a temporary one)")
    opts = parser.parse_args()
    work = opts.keep or Path(tempfile.mkdtemp(prefix="nodeimage-bench-"))
    with bench_setup(work) as b:
        env, out = b.env, work / "out"
        common = ["--profile", PROFILE, f"--lock-file={b.lock}", f"--mirror={b.mirror}"]
        build = [*common, f"--registry-mirror={b.registry}", f"--out={out}", "--suite-args=--standins"]
        base_s, _ = invoke(["base", "--out", str(out / "base")], env)
        build_s, _ = invoke(["build", *build], env)
        noop_s, noop_log = invoke(["build", *build], env)
        _, fetch_log = invoke(["fetch", *common], env)

    manifest = json.loads((out / PROFILE / "build-manifest.json").read_text())
    image = out / PROFILE / "node.qcow2"
    base = next((out / "base").glob("*.qcow2"))
    artifacts = sum(p.stat().st_size for d in ("sha256", "sha512") for p in (work / "cache" / d).rglob("*")
                    if p.is_file())  # fmt: skip
    second_fetch = re.search(r"\((?:[^()]*), (\d+) bytes\)", fetch_log)

    print(f"nodeimage build benchmark ({PROFILE}, stand-in artifacts, accelerator {manifest['accelerator']})")
    print(f"  base image (invoke base)          {base_s:8.1f} s")
    for phase, secs in manifest["phases"].items():
        print(f"  build phase {phase:<22}{secs:8.1f} s")
    total = base_s + build_s
    print(f"  e2e total (base+build+boot+suite) {total:8.1f} s   target < 600 s")
    verdict = "no-op" if "up to date" in noop_log else "REBUILT"
    print(f"  no-op rebuild                     {noop_s:8.2f} s   target < 2 s  ({verdict})")
    print(f"  second fetch downloaded           {second_fetch.group(1) if second_fetch else '?':>8} bytes target 0")
    ratio = image.stat().st_size / (base.stat().st_size + artifacts)
    print(
        f"  image {image.stat().st_size / 2**20:.0f} MiB vs base {base.stat().st_size / 2**20:.0f} MiB"
        f" + artifacts {artifacts / 2**20:.1f} MiB: ratio {ratio:.2f}   target <= 1.10"
    )
    print(f"  peak RSS of the build process     {manifest.get('peak_rss_mib', '?'):>8} MiB")
    if not opts.keep:
        print(f"  (work directory {work} can be removed)")


if __name__ == "__main__":
    main()
