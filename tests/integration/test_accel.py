"""The accelerator probe: it detects a guest that runs, and one that does not."""

from __future__ import annotations

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


def test_probe_answer_is_consistent() -> None:
    """Whatever this host is, KVM is reported only with a guest that booted under it."""
    report = accel.probe()
    assert report.accelerator in ("kvm", "tcg")
    assert report.kvm_usable == (report.accelerator == "kvm")
    if report.kvm_usable:
        assert "booted under KVM" in report.reason or "ran under KVM" in report.reason
