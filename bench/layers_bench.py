#!/usr/bin/env python3
"""Layered builds, measured in one run: what a change costs depending on the layer it touches.

Four builds of the k8s-1.17-debian12 profile from the stand-ins, in one checkout copy, sharing one cache:

  1. full          a cold layer cache: packer (OS layer), the stack and node layers, generalisation, outputs
  2. last layer    after a change to the node layer's step (provision/node/10-install.sh)
  3. middle layer  after a change to a stack layer step (provision/stack/20-config.sh)
  4. no-op         nothing changed

Each build skips the booted image suite (a fixed cost of about 100 s under TCG whatever changed; the
un-booted suite still runs). Prints each build's time and phases and the ratios to the full build.
Targets (printed, never asserted): last-layer change <= 40 % of the full build; no-op < 2 s.

    .venv/bin/python bench/layers_bench.py [--keep DIR] [--base DIR]
"""

from __future__ import annotations

from common import PROFILE, bench_options, bench_setup, copy_checkout, invoke, link_base, manifest

CHANGES = {
    "last layer": "provision/node/10-install.sh",
    "middle layer": "provision/stack/20-config.sh",
}


def main() -> None:
    opts, work = bench_options(__doc__, "nodeimage-layers-bench-")
    with bench_setup(work) as b:
        checkout = copy_checkout(work / "checkout")
        out = work / "out"
        link_base(out, opts.base)
        runs: list[tuple[str, float, dict[str, object]]] = []
        seconds, _ = invoke(b.build_args(out, "--skip-suite"), b.env, cwd=checkout)
        runs.append(("full", seconds, manifest(out / PROFILE)))
        for name, script in CHANGES.items():
            path = checkout / script
            path.write_text(path.read_text() + f"# changed by bench/layers_bench.py ({name})\n")
            seconds, _ = invoke(b.build_args(out, "--skip-suite"), b.env, cwd=checkout)
            runs.append((name, seconds, manifest(out / PROFILE)))
        seconds, log = invoke(b.build_args(out, "--skip-suite"), b.env, cwd=checkout)
        noop = "up to date" in log
    full = runs[0][1]
    print(f"nodeimage layered builds ({PROFILE}, stand-ins, accelerator {runs[0][2]['accelerator']}; "
          "booted suite skipped in every build)")  # fmt: skip
    for name, secs, m in runs:
        phases = {k: v for k, v in m["phases"].items() if k != "total"}  # type: ignore[union-attr]
        shown = ", ".join(f"{k} {v:.0f}s" for k, v in phases.items())
        print(f"  {name:<13} {secs:7.1f} s  {100 * secs / full:5.1f} % of full   phases: {shown}")
    verdict = "up to date" if noop else "REBUILT"
    print(f"  {'no-op':<13} {seconds:7.2f} s  {100 * seconds / full:5.1f} % of full   ({verdict})")
    print(f"  targets: last layer <= 40 % of full (measured {100 * runs[1][1] / full:.1f} %); no-op < 2 s "
          f"(measured {seconds:.2f} s)")
    if not opts.keep:
        print(f"  (work directory {work} can be removed)")


if __name__ == "__main__":
    main()
