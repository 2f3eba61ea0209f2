"""Atomic writes: a file appears under its final name complete, or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(final: Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it into place on success.

    On any exception (Ctrl-C included) the temporary file is removed and
    ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if mode is not None and tmp.exists():
            tmp.chmod(mode)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(final: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Write ``data`` to ``final`` atomically with permissions ``mode``."""
    payload = data.encode() if isinstance(data, str) else data
    with atomic_path(final) as tmp:
        # Open with the final mode from the start so a secret is never
        # readable by others, not even briefly.
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC, mode)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (images are gigabytes)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
