"""Files that are never seen half-written: temp name beside the target, write, (fsync),
rename over it. One writer for checkpoints' small files, manifests, credentials and the
cache catalog.

Temp names carry the writer's pid (``.<name>.<pid>.<random>.tmp``), so a cleaner can tell
a dead writer's leftovers from a live writer's file (:func:`temp_owner`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

__all__ = ["fsync_directory", "temp_owner", "temp_path", "write_atomic"]


def write_atomic(
    path: str | os.PathLike[str],
    chunks: Iterable[bytes | memoryview],
    *,
    durable: bool = True,
    mode: int = 0o666,
) -> None:
    """Write ``chunks`` to a temp file beside ``path``, then rename it over ``path``.

    A reader sees the old content or the new, never a mix. ``durable``: fsync the file
    before the rename and the directory after, so a crash keeps one of the two (the
    catalog, a hint, skips it). ``mode``: the new file's permissions before the umask, as
    for ``open()``: other users can read a model's files; credentials pass ``0o600``.
    """
    target = Path(path)
    temp = temp_path(target)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_directory(target.parent)


def temp_path(target: Path) -> Path:
    """A fresh temp name beside ``target`` that names this process as its writer."""
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def temp_owner(path: Path) -> int:
    """The pid in a temp file name ``<name>.<pid>.<random>.tmp`` (0 if there is none)."""
    parts = path.name.split(".")
    return int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else 0


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Make renames and creations inside ``path`` durable."""
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
