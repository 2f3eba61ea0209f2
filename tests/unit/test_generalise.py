"""The common generalisation list (provision/files/generalise.list) applied to a tree."""

from __future__ import annotations

from pathlib import Path

from nodeimage import generalise

DATABASES = ("passwd", "group", "shadow", "gshadow", "subuid", "subgid")


def test_account_backups_that_still_hold_the_build_account_go_and_the_live_files_stay(tmp_path: Path) -> None:
    """userdel at the build VM's shutdown leaves <file>- with the account and the day it was made in it."""
    etc = tmp_path / "etc"
    etc.mkdir()
    for name in DATABASES:
        (etc / name).write_text("root:x:0:0\n")
        (etc / f"{name}-").write_text("root:x:0:0\nnodeimage-build:!:20788:0:99999:7:::\n")
    changed = generalise.apply(tmp_path, generalise.rules_for())
    assert not [n for n in DATABASES if (etc / f"{n}-").exists()]
    assert all((etc / n).read_text() == "root:x:0:0\n" for n in DATABASES)
    assert {f"etc/{n}-" for n in DATABASES} <= set(changed)
