"""Invoke tasks for nodeimage: each parses its options and calls one library function.

Run `invoke --list` for the tasks and `invoke --help <task>` for their options.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from invoke import Context, Exit, task

from nodeimage.log import NodeimageError, debug_enabled

F = TypeVar("F", bound=Callable[..., Any])


def _user_errors(fn: F) -> F:
    """Turn NodeimageError and Ctrl-C into a clean exit; tracebacks only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NodeimageError as exc:
            if debug_enabled():
                traceback.print_exc()
            raise Exit(f"error: {exc}", code=1) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper  # type: ignore[return-value]


def _debug_from_env(c: Context) -> None:
    if getattr(c.config.run, "echo", False) or os.environ.get("NODEIMAGE_DEBUG"):
        os.environ["NODEIMAGE_DEBUG"] = "1"


# --- tasks ---------------------------------------------------------------------------------------
# Each task: typed options, a docstring whose first line reads well in `invoke --list`,
# help={...} for every option, @_user_errors, and a body that calls one library function.

_ = sys  # keep the import for tasks that print to stderr
