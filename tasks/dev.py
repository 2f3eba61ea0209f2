"""The project's own tasks: its tests and its benchmarks."""

from __future__ import annotations

from invoke import Context

from nodeimage.cli import task


@task(
    help={
        "fast": "skip the end-to-end tests (marker e2e) that build and boot VM images",
        "pytest_args": "extra arguments for pytest, e.g. '-k profiles -x'",
    }
)
def test(c: Context, fast: bool = False, pytest_args: str = "") -> None:
    """Run the test suite: linters, unit, integration and (unless --fast) the e2e builds and boots."""
    import sys

    pytest = f"{sys.executable} -m pytest -rs --durations=15"
    # first what can spread over the cores, then the e2e tests, which share their builds (one process)
    c.run(f"{pytest} -m 'not e2e' {pytest_args}", echo=True, pty=False)
    if not fast:
        c.run(f"{pytest} -v -m e2e {pytest_args}", echo=True, pty=False)


@task(help={"which": "which benchmark: build, layers, images, ova or all (default all)"})
def bench(c: Context, which: str = "all") -> None:
    """Run the benchmarks in bench/ and print their figures (they never fail on a timing)."""
    import sys

    scripts = {
        "build": "bench/build_bench.py",
        "layers": "bench/layers_bench.py",
        "images": "bench/images_bench.py",
        "ova": "bench/ova_bench.py",
    }
    if which not in (*scripts, "all"):
        from nodeimage.log import die

        die(f"invalid --which value: {which!r}", hint=f"expected one of {', '.join(scripts)}, all")
    for name, script in scripts.items():
        if which in (name, "all"):
            c.run(f"{sys.executable} {script}", echo=True, pty=False)
