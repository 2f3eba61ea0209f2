"""fsutil.held_exclusively: the flock that serialises two builds of a profile and two downloads of a file."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from nodeimage.fsutil import held_exclusively


def test_a_second_holder_is_told_and_waits_for_the_first(tmp_path: Path) -> None:
    lock = tmp_path / "sub" / ".p.build.lock"
    order: list[str] = []
    first_in, release = threading.Event(), threading.Event()

    def first() -> None:
        with held_exclusively(lock, lambda: order.append("first waited")):
            order.append("first in")
            first_in.set()
            release.wait(10)
            order.append("first out")

    t = threading.Thread(target=first)
    t.start()
    assert first_in.wait(10)
    threading.Timer(0.3, release.set).start()
    with held_exclusively(lock, lambda: order.append("second waits")):
        order.append("second in")
    t.join(10)
    assert order == ["first in", "second waits", "first out", "second in"]


def test_an_uncontended_lock_does_not_wait(tmp_path: Path) -> None:
    waited: list[bool] = []
    with held_exclusively(tmp_path / "l", lambda: waited.append(True)):
        pass
    assert waited == []


def test_a_killed_holder_leaves_the_lock_free(tmp_path: Path) -> None:
    lock = tmp_path / "l"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import fcntl,os,time; fd=os.open({str(lock)!r}, os.O_RDWR|os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"],  # fmt: skip
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    waited: list[bool] = []
    with held_exclusively(lock, lambda: waited.append(True)):
        pass
    assert waited == []
