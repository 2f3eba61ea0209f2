"""The accelerator probe: it detects a guest that runs, and one that does not."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from nodeimage import accel


def test_probe_guest_runs_under_tcg(tmp_path: Path) -> None:
    ok, why = accel._boots("tcg", tmp_path, kernel=None, timeout=30)
    assert ok, why


def test_kernel_probe_runs_under_tcg(tmp_path: Path) -> None:
    kernel = accel.find_probe_kernel()
    if kernel is None:
        pytest.skip("no readable /boot/vmlinuz-* (deps/apt-packages.txt installs linux-image-cloud-amd64)")
    ok, why = accel._boots("tcg", tmp_path, kernel=kernel, timeout=60)
    assert ok, why


def test_a_guest_that_never_starts_is_not_reported_as_running(tmp_path: Path) -> None:
    bogus = tmp_path / "vmlinuz-bogus"
    bogus.write_bytes(b"not a kernel")
    ok, why = accel._boots("tcg", tmp_path, kernel=bogus, timeout=10)
    assert not ok
    assert why


def test_forced_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODEIMAGE_ACCEL", "tcg")
    report = accel.probe()
    assert (report.accelerator, report.kvm_usable) == ("tcg", False)
    assert "NODEIMAGE_ACCEL" in report.reason


def _kvm_present() -> None:
    if not (Path("/dev/kvm").exists() and os.access("/dev/kvm", os.R_OK | os.W_OK)):
        pytest.skip("needs a /dev/kvm this user can open (the case the probe exists for)")


@pytest.mark.parametrize(("boots", "expected"), [((True, ""), "kvm"), ((False, "no sign of life"), "tcg")])
def test_kvm_is_reported_only_when_the_guest_ran(
    boots: tuple[bool, str], expected: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _kvm_present()
    monkeypatch.setenv("NODEIMAGE_CACHE", str(tmp_path))
    monkeypatch.delenv("NODEIMAGE_ACCEL", raising=False)
    monkeypatch.setattr(accel, "_boots", lambda *a, **k: boots)
    report = accel.probe(cache=False)
    assert (report.accelerator, report.kvm_usable) == (expected, expected == "kvm")
    if expected == "tcg":
        assert "no sign of life" in report.reason


def test_a_guest_that_hangs_under_kvm_means_tcg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """/dev/kvm present, the guest never answers (here: a qemu that hangs): TCG, within the deadline."""
    _kvm_present()
    fake = tmp_path / "bin" / "qemu-system-x86_64"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexec sleep 600\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("NODEIMAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NODEIMAGE_ACCEL", raising=False)
    started = time.monotonic()
    report = accel.probe(timeout=2, cache=False)
    assert report.accelerator == "tcg" and not report.kvm_usable
    assert "no sign of life from the guest within 2s" in report.reason
    assert time.monotonic() - started < 30
    left = subprocess.run(["pgrep", "-f", str(fake)], capture_output=True, text=True)
    assert left.stdout == "", "the hung probe guest was left running"


def test_the_answer_is_kept_per_host_boot_and_qemu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _kvm_present()
    monkeypatch.setenv("NODEIMAGE_CACHE", str(tmp_path))
    monkeypatch.delenv("NODEIMAGE_ACCEL", raising=False)
    calls = []
    monkeypatch.setattr(accel, "_boots", lambda *a, **k: calls.append(a) or (False, "hung"))
    first = accel.probe()
    second = accel.probe()
    assert len(calls) == 1
    assert second.accelerator == first.accelerator == "tcg"
    assert "probed earlier in this boot" in second.reason
    monkeypatch.setattr(accel, "probe_key", lambda kernel, timeout: "another-boot")
    accel.probe()
    assert len(calls) == 2
    accel.probe(cache=False)
    assert len(calls) == 3
