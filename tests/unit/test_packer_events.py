"""Packer's machine-readable stream becomes progress lines and error context."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeimage.packer import PackerInfo, _Progress, parse_event


def test_parse_event_unescapes_commas_and_newlines() -> None:
    e = parse_event("1700000000,qemu,ui,say,==> qemu: a%!(PACKER_COMMA) b\\nc\n")
    assert e is not None
    assert (e.timestamp, e.target, e.type) == ("1700000000", "qemu", "ui")
    assert e.data == ("say", "==> qemu: a, b\nc")


@pytest.mark.parametrize("line", ["", "plain text from packer", "abc,qemu,ui,say,x"])
def test_non_machine_readable_lines_are_not_events(line: str) -> None:
    assert parse_event(line) is None


def test_progress_keeps_tail_and_tracks_ssh_wait(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _Progress(tmp_path / "serial.log")
    for raw in [
        "1,qemu,ui,say,==> qemu: Waiting for SSH to become available...",
        "2,qemu,ui,message,    qemu: installing conntrack",
        "3,qemu,ui,error,Script exited with non-zero exit status: 3",
    ]:
        event = parse_event(raw)
        assert event is not None
        p.handle(event)
    assert p.waiting_ssh_since is not None
    assert "qemu: installing conntrack" in p.tail
    assert p.errors == ["Script exited with non-zero exit status: 3"]
    assert "Waiting for SSH to become available" in capsys.readouterr().err


def test_serial_tail_strips_escape_codes(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_bytes(b"\x1b[0mBooting from Hard Disk...\r\n\r\nNo bootable device.\n")
    assert _Progress(log).serial_tail() == "Booting from Hard Disk...\nNo bootable device."


@pytest.mark.parametrize(("version", "plugin"), [((1, 6, 6), False), ((1, 7, 0), True), ((1, 11, 2), True)])
def test_plugin_needed_from_1_7(version: tuple[int, int, int], plugin: bool) -> None:
    assert PackerInfo("/usr/bin/packer", version).needs_plugin is plugin
