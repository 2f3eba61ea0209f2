"""Messages, progress steps, machine-readable events and the one error type users see.

Every user-facing failure is a :class:`NodeimageError` raised through
:func:`die`; the task layer turns it into an exit code and prints the hint,
so tracebacks only appear with ``--debug`` (``NODEIMAGE_DEBUG=1``).

Human messages go to stderr. With ``--json`` (``NODEIMAGE_JSON=1``) stdout
carries one JSON object per line instead of the tasks' plain results: an
event for each step's start and end (with its duration), each message,
warning and error, and each output written (path, format, sha256, size).
``docs/events.schema.json`` is the schema; a test holds the events to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import NoReturn

_depth = 0


class NodeimageError(Exception):
    """An error the user can act on: a message and an optional hint."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


def debug_enabled() -> bool:
    return os.environ.get("NODEIMAGE_DEBUG", "") not in ("", "0")


def json_enabled() -> bool:
    return os.environ.get("NODEIMAGE_JSON", "") not in ("", "0")


def event(kind: str, **fields: object) -> None:
    """One machine-readable event on stdout (only with --json / NODEIMAGE_JSON=1)."""
    if json_enabled():
        record = {"time": round(time.time(), 3), "event": kind, **fields}
        print(json.dumps(record, sort_keys=True, default=str), file=sys.stdout, flush=True)


def result(text: str, **fields: object) -> None:
    """What a task answers (a path, a report): plain on stdout, or a ``result`` event with --json."""
    if json_enabled():
        event("result", text=text, **fields)
    else:
        print(text, flush=True)


def output(path: object, *, format: str, sha256: str, size: int) -> None:
    """An output file written: announced to people and, with --json, as an ``output`` event."""
    _emit("", f"{path}: {size / 2**20:.0f} MiB, sha256 {sha256}")
    event("output", path=str(path), format=format, sha256=sha256, size=size)


def die(message: str, hint: str | None = None) -> NoReturn:
    """Stop with an error the user can act on."""
    raise NodeimageError(message, hint)


def _emit(prefix: str, message: str) -> None:
    indent = "  " * _depth
    print(f"{indent}{prefix}{message}", file=sys.stderr, flush=True)


def info(message: str) -> None:
    _emit("", message)
    event("info", message=message, depth=_depth)


def warn(message: str) -> None:
    _emit("WARNING: ", message)
    event("warning", message=message, depth=_depth)


def debug(message: str) -> None:
    if debug_enabled():
        _emit("", message)
        event("debug", message=message, depth=_depth)


def progress(title: str, done: float, total: float | None = None, unit: str = "") -> None:
    """Progress inside a long step: a line for people, a ``progress`` event for programs."""
    if unit == "%":
        shown = f"{done:.0f}%"
    else:
        shown = f"{done:.0f}{unit}" + (f" of {total:.0f}{unit} ({100 * done / total:.0f}%)" if total else "")
    _emit("… ", f"{title}: {shown}")
    event("progress", title=title, done=done, total=total, unit=unit, depth=_depth)


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """Announce a step, nest the output inside it and report its duration."""
    global _depth
    _emit("‣ ", title)
    event("step-start", title=title, depth=_depth)
    start = time.monotonic()
    _depth += 1
    try:
        yield
    except BaseException:
        _depth -= 1
        seconds = round(time.monotonic() - start, 1)
        _emit("✗ ", f"{title} failed after {seconds:.1f}s")
        event("step-end", title=title, depth=_depth, ok=False, seconds=seconds)
        raise
    _depth -= 1
    seconds = round(time.monotonic() - start, 1)
    _emit("✓ ", f"{title} ({seconds:.1f}s)")
    event("step-end", title=title, depth=_depth, ok=True, seconds=seconds)
