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


@task(
    help={
        "distro": "distribution to bootstrap: debian or ubuntu",
        "release": "release codename: bookworm (debian) or focal (ubuntu)",
        "mirror": "package mirror URL (http, https or file://), ideally a pinned snapshot",
        "arch": "Debian architecture name (amd64, arm64)",
        "out": "directory for <distro>-<release>-<arch>.qcow2 and its .json record",
        "epoch": "SOURCE_DATE_EPOCH for the build (default: the release's publication date)",
    }
)
@_user_errors
def base(
    c: Context,
    distro: str = "debian",
    release: str = "bookworm",
    mirror: str = "http://deb.debian.org/debian",
    arch: str = "amd64",
    out: str = "build/base",
    epoch: int = -1,
) -> None:
    """Build (or reuse) a cloud-init-ready base disk image from a package mirror with mmdebstrap."""
    from pathlib import Path

    from nodeimage.base import build_base

    _debug_from_env(c)
    image = build_base(
        distro=distro,
        release=release,
        mirror=mirror,
        arch=arch,
        out_dir=Path(out),
        epoch=None if epoch < 0 else epoch,
    )
    print(image)
