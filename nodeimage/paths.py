"""Where things are in a nodeimage checkout: defined once, imported everywhere.

The library runs from its checkout (`make` sets up a virtualenv with an
editable install), so the profiles, the lock, the provision steps and the
acceptance suite are found relative to this package.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILES_DIR = REPO_ROOT / "profiles"
PROVISION_DIR = REPO_ROOT / "provision"
PROVISION_FILES = PROVISION_DIR / "files"
PACKER_DIR = REPO_ROOT / "packer"
SUITE_DIR = REPO_ROOT / "tests" / "acceptance"
DEFAULT_LOCK = REPO_ROOT / "artifacts.lock.yaml"
DEFAULT_OUT = Path("build")
# Cluster secrets, seeds and VM state (`invoke seed`, `invoke up`); never removed by `invoke clean`.
DEFAULT_STATE_DIR = REPO_ROOT / "build" / "clusters"
BOOTSTRAP_PROGRAM = PROVISION_FILES / "nodeimage-bootstrap"
