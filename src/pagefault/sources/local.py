"""Local files: parallel ``preadv`` straight into the caller's buffers (releases the GIL)."""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from pagefault.errors import NotFound, SourceError
from pagefault.sources.base import Buffer
from pagefault.system.mapping import PAGE, buffer_address, populate_read
from pagefault.system.pagecache import cached_bytes

__all__ = ["LocalFileSource", "read_fully"]

# Linux IOV_MAX: one preadv() takes at most this many buffers.
_IOV_MAX = 1024
_PREFETCH_STEP = 2 << 20  # per WILLNEED call: within any device's readahead window


class LocalFileSource:
    """A local file read with positional, vectored reads; thread-safe, opens lazily."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._size: int | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return str(self.path)

    def size(self) -> int:
        self._open()
        assert self._size is not None  # set by _open
        return self._size

    def read_into(self, offset: int, buffers: Sequence[Buffer]) -> None:
        read_fully(self._open(), offset, buffers, name=self.name)

    def map_private(self) -> mmap.mmap:
        fd = self._open()
        try:
            return mmap.mmap(
                fd, self.size(), flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE
            )
        except (OSError, ValueError) as exc:
            raise SourceError(f"{self.name}: cannot map file: {exc}") from exc

    def populate(self, mapping: mmap.mmap, offset: int, length: int) -> None:
        try:
            populate_read(mapping, buffer_address(mapping), offset, length)
        except OSError as exc:
            raise SourceError(
                f"{self.name}: bytes [{offset}, {offset + length}) cannot be mapped: {exc.strerror}"
            ) from exc

    def prefetch(self, offset: int, length: int) -> None:
        # One WILLNEED call reads at most the device's readahead window (read_ahead_kb,
        # 8 MiB here: a 64 MiB hint fetched only its first 8 MiB), so hint in steps.
        held = self.cached(offset, length)
        if held is not None and held >= length - length % PAGE:
            return  # hot: the hints would only look pages up
        fd = self._open()
        for start in range(offset, offset + length, _PREFETCH_STEP):
            step = min(_PREFETCH_STEP, offset + length - start)
            os.posix_fadvise(fd, start, step, os.POSIX_FADV_WILLNEED)

    def cached(self, offset: int, length: int) -> int | None:
        return cached_bytes(self._open(), offset, length)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> LocalFileSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open(self) -> int:
        with self._lock:
            if self._fd is None:
                try:
                    self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                    self._size = os.fstat(self._fd).st_size
                except FileNotFoundError as exc:
                    raise NotFound(f"{self.name}: no such file") from exc
                except OSError as exc:
                    raise SourceError(f"{self.name}: cannot open: {exc.strerror}") from exc
            return self._fd


def read_fully(fd: int, offset: int, buffers: Sequence[Buffer], *, name: str) -> None:
    """Fill ``buffers`` in order from ``fd`` at ``offset``, resuming after short reads."""
    for first in range(0, len(buffers), _IOV_MAX):
        offset = _readv_fully(fd, offset, list(buffers[first : first + _IOV_MAX]), name=name)


def _readv_fully(fd: int, offset: int, buffers: list[Buffer], *, name: str) -> int:
    while buffers:
        try:
            got = os.preadv(fd, buffers, offset)
        except OSError as exc:
            raise SourceError(f"{name}: read at offset {offset} failed: {exc.strerror}") from exc
        if got == 0:
            raise SourceError(
                f"{name}: unexpected end of file at offset {offset} "
                "(was the file truncated while loading?)"
            )
        offset += got
        buffers = _advance(buffers, got)
    return offset


def _advance(buffers: list[Buffer], count: int) -> list[Buffer]:
    """Drop ``count`` filled bytes from the front of ``buffers``."""
    index = 0
    while index < len(buffers) and count >= len(buffers[index]):
        count -= len(buffers[index])
        index += 1
    rest = buffers[index:]
    if rest and count:
        rest[0] = rest[0][count:]
    return rest
