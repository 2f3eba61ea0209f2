"""--json and --debug on the command line: every stdout line an event the schema accepts, one error event, and
tracebacks only with --debug."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs" / "events.schema.json").read_text())


def invoke(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NODEIMAGE_CACHE": str(tmp_path / "cache")}
    for name in ("NODEIMAGE_DEBUG", "NODEIMAGE_JSON"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip


def events(stdout: str) -> list[dict[str, object]]:
    out = []
    for line in stdout.splitlines():
        record = json.loads(line)  # every stdout line is JSON
        jsonschema.validate(record, SCHEMA)
        out.append(record)
    return out


def test_schema_rejects_a_malformed_event() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"time": 1.0, "event": "output", "path": "x", "format": "ova", "sha256": "nothex",
                             "size": 1}, SCHEMA)  # fmt: skip
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"time": 1.0, "event": "step-end", "title": "t", "depth": 0}, SCHEMA)


def test_ova_events_cover_steps_progress_output_and_result(tmp_path: Path) -> None:
    image = tmp_path / "node.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    proc = invoke(["ova", f"--image={image}", f"--out={tmp_path / 'node.ova'}", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = events(proc.stdout)
    kinds = [e["event"] for e in got]
    assert kinds.count("step-start") == kinds.count("step-end") >= 3
    assert "progress" in kinds
    (out,) = [e for e in got if e["event"] == "output"]
    assert out["path"] == str(tmp_path / "node.ova") and out["format"] == "ova"
    assert out["size"] == (tmp_path / "node.ova").stat().st_size
    assert got[-1]["event"] == "result" and got[-1]["path"] == str(tmp_path / "node.ova")
    assert all(e["ok"] for e in got if e["event"] == "step-end")
    assert "Writing OVA" in proc.stderr  # people still get their messages, on stderr


def test_a_failure_is_one_error_event_and_no_traceback(tmp_path: Path) -> None:
    proc = invoke(["verify", f"--build-dir={tmp_path / 'missing'}", "--json"], tmp_path)
    assert proc.returncode == 1
    got = events(proc.stdout)
    errors = [e for e in got if e["event"] == "error"]
    assert len(errors) == 1 and "build-manifest.json" in str(errors[0]["message"])
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback_and_the_commands(tmp_path: Path) -> None:
    plain = invoke(["verify", f"--build-dir={tmp_path / 'missing'}"], tmp_path)
    debug = invoke(["verify", f"--build-dir={tmp_path / 'missing'}", "--debug"], tmp_path)
    assert plain.returncode == debug.returncode == 1
    assert "Traceback" not in plain.stderr and "Traceback" in debug.stderr
    image = tmp_path / "node.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    traced = invoke(["ova", f"--image={image}", f"--out={tmp_path / 'node.ova'}", "--debug"], tmp_path)
    assert traced.returncode == 0, traced.stderr
    assert "+ qemu-img convert -p" in traced.stderr
