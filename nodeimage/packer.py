"""Packer, wrapped and not hidden.

Finds packer, reads its version, prepares the template directory for that
version (Debian's 1.6.6 has the qemu builder built in and rejects a
``required_plugins`` block; 1.7+ needs the hashicorp/qemu plugin and ``packer
init``), runs it with ``-machine-readable`` and turns the event stream into
progress lines and, on failure, the failing step's last output lines.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nodeimage.log import debug, die, info, warn
from nodeimage.paths import PACKER_DIR
from nodeimage.run import output, run, which

TEMPLATE_DIR = PACKER_DIR
QEMU_PLUGIN_VERSION = "1.1.0"
PLUGINS_HCL = f"""packer {{
  required_plugins {{
    qemu = {{
      source  = "github.com/hashicorp/qemu"
      version = "= {QEMU_PLUGIN_VERSION}"
    }}
  }}
}}
"""
TAIL_LINES = 40
SSH_REPORT_EVERY_S = 60.0


@dataclass(frozen=True)
class PackerInfo:
    path: str
    version: tuple[int, int, int]

    @property
    def version_str(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def needs_plugin(self) -> bool:
        """Packer 1.7 moved the qemu builder into a plugin that `packer init` installs."""
        return self.version >= (1, 7, 0)


@dataclass(frozen=True)
class Event:
    """One `-machine-readable` line: timestamp,target,type,data..."""

    timestamp: str
    target: str
    type: str
    data: tuple[str, ...]


def find_packer() -> PackerInfo:
    path = which("packer", "packer")
    text = output([path, "version"]).strip()
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    if not match:
        die(f"cannot read packer's version from {text!r}", hint="install packer 1.6.6 (Debian) or a current release")
    version = (int(match[1]), int(match[2]), int(match[3]))
    if version < (1, 6, 4):
        die(f"packer {'.'.join(map(str, version))} is too old", hint="nodeimage needs packer >= 1.6.4 (cd_files)")
    return PackerInfo(path, version)


def _unescape(field: str) -> str:
    return field.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "")


def parse_event(line: str) -> Event | None:
    """Parse a machine-readable line; None for anything else packer printed."""
    parts = line.rstrip("\n").split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    return Event(parts[0], parts[1], parts[2], tuple(_unescape(p) for p in parts[3:]))


def prepare_template(info_: PackerInfo, workdir: Path) -> Path:
    """Copy the template for this packer version into ``workdir`` and init plugins if needed."""
    tdir = workdir / "packer"
    if tdir.exists():
        shutil.rmtree(tdir)
    shutil.copytree(TEMPLATE_DIR, tdir)
    if info_.needs_plugin:
        (tdir / "plugins.pkr.hcl").write_text(PLUGINS_HCL)
        run([info_.path, "init", str(tdir)], env=packer_env(workdir))
    return tdir


def packer_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "CHECKPOINT_DISABLE": "1",  # no version check against the internet
            "PACKER_NO_COLOR": "1",
            "PACKER_CACHE_DIR": str(workdir / "packer_cache"),
        }
    )
    return env


def validate(info_: PackerInfo, template: Path, var_file: Path, workdir: Path) -> None:
    proc = run(
        [info_.path, "validate", f"-var-file={var_file}", str(template)],
        check=False,
        capture=True,
        env=packer_env(workdir),
    )
    if proc.returncode != 0:
        text = (proc.stdout + proc.stderr).decode(errors="replace").strip()
        die(f"packer validate rejected the template {template}:\n{text}")


class _Progress:
    """Turns events into progress lines and keeps the last output lines for errors."""

    def __init__(self, serial_log: Path) -> None:
        self.serial_log = serial_log
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.errors: list[str] = []
        self.waiting_ssh_since: float | None = None
        self.lock = threading.Lock()

    def handle(self, event: Event) -> None:
        if event.type == "ui" and event.data:
            kind, text = event.data[0], ",".join(event.data[1:])
            for line in text.splitlines() or [""]:
                self._ui(kind, line)
        elif event.type == "error" and event.data:
            self.errors.append(",".join(event.data))

    def _ui(self, kind: str, line: str) -> None:
        stripped = line.strip()
        with self.lock:
            if "Waiting for SSH" in stripped:
                self.waiting_ssh_since = time.monotonic()
            elif "Connected to SSH" in stripped:
                self.waiting_ssh_since = None
        if kind == "error":
            self.errors.append(stripped)
            self.tail.append(stripped)
        elif stripped.startswith("==>"):
            info(stripped.removeprefix("==>").strip())
            self.tail.append(stripped)
        else:
            self.tail.append(stripped)
            debug(stripped)

    def serial_tail(self, lines: int = 30) -> str:
        try:
            text = self.serial_log.read_bytes().decode(errors="replace")
        except OSError:
            return "(no serial console output)"
        ansi = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
        kept = [ansi.sub("", ln).rstrip() for ln in text.splitlines() if ln.strip()]
        return "\n".join(kept[-lines:]) or "(serial console is empty)"

    def watch_ssh(self, stop: threading.Event) -> None:
        """While packer waits for SSH, say so now and then with the console's last line."""
        while not stop.wait(5):
            with self.lock:
                since = self.waiting_ssh_since
            if since is None:
                continue
            waited = time.monotonic() - since
            if waited >= SSH_REPORT_EVERY_S and int(waited) % int(SSH_REPORT_EVERY_S) < 5:
                last = self.serial_tail(1).splitlines()[-1:] or [""]
                info(f"still waiting for SSH ({waited:.0f}s); console: {last[0][:150]}")


def _lines(proc: subprocess.Popen[str]) -> Iterator[str]:
    assert proc.stdout is not None
    yield from proc.stdout


def build(
    info_: PackerInfo,
    template: Path,
    var_file: Path,
    *,
    workdir: Path,
    serial_log: Path,
) -> None:
    """Run `packer build`; die with the failing step's output (and the console if SSH never came)."""
    cmd = [info_.path, "build", "-machine-readable", "-color=false", f"-var-file={var_file}", str(template)]
    debug("+ " + " ".join(cmd))
    progress = _Progress(serial_log)
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=packer_env(workdir),
        cwd=workdir,
        # Its own process group: on Ctrl-C the whole group (packer and the qemu it started) is stopped.
        start_new_session=True,
    )
    stop = threading.Event()
    watcher = threading.Thread(target=progress.watch_ssh, args=(stop,), daemon=True)
    watcher.start()
    try:
        for line in _lines(proc):
            event = parse_event(line)
            if event is not None:
                progress.handle(event)
            elif line.strip():
                progress.tail.append(line.strip())
        rc = proc.wait()
    except KeyboardInterrupt:
        stop.set()
        warn("interrupted: stopping packer and its VM")
        _stop(proc)
        raise
    finally:
        stop.set()
    if rc != 0:
        details = "\n    ".join(progress.tail)
        message = f"packer build failed (exit code {rc}). Last output:\n    {details}"
        seen = progress.errors + list(progress.tail)
        if any("waiting for ssh" in line.lower() for line in seen):
            console = "\n    ".join(progress.serial_tail().splitlines())
            message += f"\n  The VM never became reachable over SSH. Its serial console ends with:\n    {console}"
        die(message, hint=f"full serial console: {serial_log}; rerun with NODEIMAGE_DEBUG=1 for every output line")


def _stop(proc: subprocess.Popen[str]) -> None:
    """Ask packer's process group to stop (SIGINT lets packer clean up), then insist."""
    for sig, grace in ((signal.SIGINT, 20.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        # packer is gone; its qemu may still be shutting down in the same group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        break
    proc.wait()


def read_manifest(path: Path) -> dict[str, object]:
    """The manifest post-processor's output: the last build's artifact."""
    try:
        data = json.loads(path.read_text())
        return data["builds"][-1]  # type: ignore[no-any-return]
    except (OSError, ValueError, KeyError, IndexError) as exc:
        die(f"cannot read packer's manifest {path}: {exc}")
