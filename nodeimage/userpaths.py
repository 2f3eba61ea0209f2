"""The paths users give: an OS error on one, and reading the small files they name, as one message each.

An OSError on a user's path (missing, a directory, not writable, read-only, full) becomes one message naming
the path, what was wanted, the option it came from and what to do, instead of a traceback. The table of
reasons is the one place these words live: the command line's last-resort handler (nodeimage.cli) uses it too.
"""

from __future__ import annotations

import contextlib
import errno
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from nodeimage.log import die

_REASONS = {
    errno.ENOENT: ("it does not exist", "check the path"),
    errno.ENOTDIR: ("a part of the path is a file, not a directory", "give a path whose parents are directories"),
    errno.EISDIR: ("it is a directory", "give a file"),
    errno.EEXIST: ("a file is in the way", "remove it or give another path"),
    errno.EACCES: ("permission denied", "fix the permissions or give a path you can write"),
    errno.EPERM: ("operation not permitted", "fix the permissions or give a path you can write"),
    errno.EROFS: ("the filesystem is read-only", "give a path on a writable filesystem"),
    errno.ENOSPC: ("no space left on the filesystem", "free some space there or give a path on another filesystem"),
    errno.EDQUOT: ("disk quota exceeded", "free some space there or give a path on another filesystem"),
}


def os_error_reason(exc: OSError) -> tuple[str, str]:
    """(what went wrong, what to do) for an OS error, in words rather than an errno."""
    return _REASONS.get(exc.errno or 0, (exc.strerror or str(exc), "check the path"))


def os_error_fix(exc: OSError) -> str | None:
    """What to do about an OS error of a known kind, or None."""
    known = _REASONS.get(exc.errno or 0)
    return known[1] if known else None


def die_os_error(exc: OSError, *, action: str, path: Path, option: str | None = None) -> NoReturn:
    """One message for an OS error on a user-given path: the path, what was wanted, what to do."""
    reason, fix = os_error_reason(exc)
    if exc.errno == errno.ENOENT and action.startswith(("write", "create")):
        reason, fix = "it cannot be created there", "give a directory on a writable filesystem"
    where = f" ({option})" if option else ""
    die(f"cannot {action} {path}{where}: {reason}", hint=fix + (f", or choose another {option}" if option else ""))


@contextlib.contextmanager
def os_errors(*, action: str, path: Path, option: str | None = None) -> Iterator[None]:
    """Turn an OSError inside the block into :func:`die_os_error` (the block is expected to clean up)."""
    try:
        yield
    except OSError as exc:
        die_os_error(exc, action=action, path=path, option=option)


def read_user_file(
    path: Path, *, what: str, option: str, hint: str, limit: int = 64 * 1024, content_hint: str | None = None
) -> str:
    """The text of a small regular file the user named; one error for missing, directory, unreadable, binary.

    A FIFO or device is refused before it is opened (reading one would block or never end).
    """
    path = Path(path).expanduser()
    try:
        info = path.stat()
    except FileNotFoundError:
        die(f"{what} {path} does not exist ({option})", hint=hint)
    except OSError as exc:
        die_os_error(exc, action=f"read {what}", path=path, option=option)
    if stat.S_ISDIR(info.st_mode):
        die(f"{what} {path} is a directory, not a file ({option})", hint=hint)
    if not stat.S_ISREG(info.st_mode):
        die(f"{what} {path} is not a regular file ({option})", hint=hint)
    if info.st_size > limit:
        die(f"{what} {path} is {info.st_size} bytes: too large to be one ({option})", hint=hint)
    try:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        die_os_error(exc, action=f"read {what}", path=path, option=option)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        die(f"{what} {path} is not text ({option})", hint=content_hint or hint)
