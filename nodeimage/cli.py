"""What every nodeimage task shares: --debug and --json, one clean error message per fault, integer options.

The invoke tasks (tasks/) are the command line; this is the part of it that is not one task. An error the
code raised on purpose (:class:`~nodeimage.log.NodeimageError`), an OS error on a user's path, or Ctrl-C
becomes one message and an exit code; a traceback only with --debug.
"""

from __future__ import annotations

import functools
import inspect
import os
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from invoke import Context, Exit
from invoke import task as invoke_task

from nodeimage.log import NodeimageError, debug_enabled, event
from nodeimage.userpaths import os_error_fix

F = TypeVar("F", bound=Callable[..., Any])

COMMON_HELP = {
    "debug": "show every command run (`+ cmd`), every packer line, and tracebacks (also NODEIMAGE_DEBUG=1)",
    "json": "print one JSON event per line on stdout instead of plain results (also NODEIMAGE_JSON=1; "
    "schema: docs/events.schema.json)",
}


def _switches(c: Context | None, debug: bool, json: bool) -> None:
    """--debug (or `invoke --echo`, NODEIMAGE_DEBUG=1) and --json, for this process and what it runs."""
    if debug or os.environ.get("NODEIMAGE_DEBUG") or (c is not None and getattr(c.config.run, "echo", False)):
        os.environ["NODEIMAGE_DEBUG"] = "1"
    if json:
        os.environ["NODEIMAGE_JSON"] = "1"


def os_error(exc: OSError) -> tuple[str, str]:
    """One sentence for an OS error: the path(s), the reason, and what to do."""
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    reason = exc.strerror or str(exc)
    message = f"{paths}: {reason}" if paths else reason
    return message, os_error_fix(exc) or "rerun with --debug for the traceback"


def int_option(name: str, value: str, *, minimum: int = 0, default: int | None = None) -> int | None:
    """An integer option given as text (invoke would crash with a traceback on `--cpus abc`)."""
    if value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum:
        from nodeimage.log import die

        die(f"--{name.replace('_', '-')}: {value!r} is not a whole number of at least {minimum}",
            hint=f"e.g. --{name.replace('_', '-')}={max(minimum, 2)}")  # fmt: skip
    return number


def user_errors(fn: F) -> F:
    """Turn NodeimageError and Ctrl-C into one message and an exit code (tracebacks only with --debug), and give
    the task the --debug and --json options. Applied by :func:`task`; harmless if also applied by hand."""
    if getattr(fn, "_nodeimage_task", False):
        return fn

    @functools.wraps(fn)
    def wrapper(*args: Any, debug: bool = False, json: bool = False, **kwargs: Any) -> Any:
        _switches(args[0] if args and isinstance(args[0], Context) else None, debug, json)
        try:
            return fn(*args, **kwargs)
        except NodeimageError as exc:
            if debug_enabled():
                traceback.print_exc()
            event("error", message=exc.message, hint=exc.hint)
            raise Exit(f"error: {exc}", code=1) from None
        except KeyboardInterrupt:
            event("error", message="interrupted", hint=None)
            raise Exit("interrupted", code=130) from None
        except OSError as exc:  # a filesystem or OS fault no check caught: still one message, naming the path
            if debug_enabled():
                traceback.print_exc()
            message, hint = os_error(exc)
            event("error", message=message, hint=hint)
            raise Exit(f"error: {message}\n  hint: {hint}", code=1) from None

    params = list(inspect.signature(fn).parameters.values())
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool)
             for n in ("debug", "json")]  # fmt: skip
    wrapper.__signature__ = inspect.Signature([*params, *extra])  # type: ignore[attr-defined]
    wrapper._nodeimage_task = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def task(*args: Any, help: dict[str, str] | None = None, **kwargs: Any) -> Any:
    """invoke's @task, plus what every nodeimage task has: --debug, --json and one clean error message."""
    if args and callable(args[0]):
        return invoke_task(user_errors(args[0]), help=dict(COMMON_HELP))
    return lambda fn: invoke_task(user_errors(fn), *args, help={**(help or {}), **COMMON_HELP}, **kwargs)
