"""Messages, progress steps and the one error type users see.

Every user-facing failure is a :class:`NodeimageError` raised through
:func:`die`; the task layer turns it into an exit code and prints the hint,
so tracebacks only appear with ``--debug`` (``NODEIMAGE_DEBUG=1``).
"""

from __future__ import annotations

import contextlib
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


def die(message: str, hint: str | None = None) -> NoReturn:
    """Stop with an error the user can act on."""
    raise NodeimageError(message, hint)


def _emit(prefix: str, message: str) -> None:
    indent = "  " * _depth
    print(f"{indent}{prefix}{message}", file=sys.stderr, flush=True)


def info(message: str) -> None:
    _emit("", message)


def warn(message: str) -> None:
    _emit("WARNING: ", message)


def debug(message: str) -> None:
    if debug_enabled():
        _emit("", message)


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """Announce a step, nest the output inside it and report its duration."""
    global _depth
    _emit("‣ ", title)
    start = time.monotonic()
    _depth += 1
    try:
        yield
    except BaseException:
        _depth -= 1
        _emit("✗ ", f"{title} failed after {time.monotonic() - start:.1f}s")
        raise
    _depth -= 1
    _emit("✓ ", f"{title} ({time.monotonic() - start:.1f}s)")
