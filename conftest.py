"""Project-wide pytest settings that must act before collection: which runs may use several processes.

pyproject.toml spreads tests over the cores (pytest-xdist, ``-n auto``). Two kinds of test must not be spread:
the end-to-end tests share session fixtures (one build, one registry, one booted cluster) that every worker
would make again, and the acceptance suite checks one image or a few nodes in order. A run that selects either
(a path in tests/e2e or tests/acceptance, or the default paths without ``-m "not e2e"``) runs in one process;
`invoke test` runs the rest first, spread, then the e2e tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
SERIAL = (ROOT / "tests" / "e2e", ROOT / "tests" / "acceptance")


def _selects(config: pytest.Config, directory: Path) -> bool:
    for arg in config.args:
        path = Path(arg.split("::", 1)[0]).resolve()
        if path == directory or directory in path.parents or path in directory.parents:
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    if not getattr(config.option, "numprocesses", None):
        return
    e2e_deselected = "not e2e" in (config.option.markexpr or "")
    acceptance = _selects(config, SERIAL[1])
    e2e = _selects(config, SERIAL[0]) and not e2e_deselected
    if acceptance or e2e:
        config.option.numprocesses = 0
        config.option.dist = "no"
