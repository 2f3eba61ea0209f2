"""The one wrapper every external command goes through.

List arguments only, stdin closed, ``check`` by default, the command logged
as ``+ cmd`` in debug mode, and a failure that names the command, its exit
code and the tail of its error output.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from nodeimage.log import debug, die

Cmd = Sequence[str | Path]


def which(program: str, package: str | None = None) -> str:
    """Return the path of ``program`` or die naming the package to install."""
    path = shutil.which(program)
    if path is None:
        die(
            f"required program not found: {program}",
            hint=f"install it (Debian package: {package or program}); `make deps` installs all of them",
        )
    return path


def run(
    cmd: Cmd,
    *,
    check: bool = True,
    capture: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    input: bytes | None = None,
    timeout: float | None = None,
    secret_args: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``cmd``; on failure die naming the command and exit code.

    ``secret_args`` keeps the arguments out of logs and error messages, for
    commands that must be given a secret on their command line.
    """
    argv = [str(a) for a in cmd]
    shown = argv[0] + (" <arguments hidden>" if secret_args else "")
    if not secret_args:
        shown = shlex.join(argv)
    debug(f"+ {shown}")
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL if input is None else None,
            input=input,
            capture_output=capture,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        die(f"required program not found: {argv[0]}", hint="`make deps` installs the tools nodeimage needs")
    except subprocess.TimeoutExpired:
        die(f"command timed out after {timeout}s: {shown}")
    if check and proc.returncode != 0:
        tail = ""
        if capture and proc.stderr:
            lines = proc.stderr.decode(errors="replace").strip().splitlines()[-15:]
            tail = "\n    " + "\n    ".join(lines)
        die(f"command failed with exit code {proc.returncode}: {shown}{tail}")
    return proc


def output(cmd: Cmd, **kwargs: object) -> str:
    """Run ``cmd`` and return its standard output as text."""
    proc = run(cmd, capture=True, **kwargs)  # type: ignore[arg-type]
    return proc.stdout.decode()
