"""The one protocol every byte source implements, plus the optional mapping capability.

Call order: ``size()`` and ``read_into()`` any number of times, from any number of
threads at once, then ``close()`` once. Implementations open lazily so that
constructing a source does no I/O.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["AwaitableSource", "Buffer", "MappableSource", "PageCacheSource", "Source"]

Buffer = memoryview  # a writable, C-contiguous byte view


@runtime_checkable
class Source(Protocol):
    """Random-access bytes of one file: "read this range into these buffers"."""

    @property
    def name(self) -> str:
        """Human-readable identity used in error messages (a path or URI)."""
        ...

    def size(self) -> int:
        """Total size in bytes."""
        ...

    def read_into(self, offset: int, buffers: Sequence[Buffer]) -> None:
        """Fill ``buffers`` in order with the contiguous bytes starting at ``offset``.

        Must be safe to call from several threads at once; raises ``SourceError`` (or
        ``NotFound``) on failure and never returns with a buffer partly filled silently.
        """
        ...

    def close(self) -> None: ...


@runtime_checkable
class MappableSource(Source, Protocol):
    """A source backed by a local file that can be mapped copy-on-write."""

    def map_private(self) -> mmap.mmap:
        """Return a private (copy-on-write) read-write mapping of the whole file."""
        ...

    def populate(self, mapping: mmap.mmap, offset: int, length: int) -> None:
        """Make ``[offset, offset + length)`` of a mapping from ``map_private`` resident."""
        ...


@runtime_checkable
class PageCacheSource(Source, Protocol):
    """A source read through the kernel's page cache (a plain local file), which can be
    asked to read ahead of its readers (``pipeline/readahead.py``)."""

    def prefetch(self, offset: int, length: int) -> None:
        """Start reading ``[offset, offset + length)`` into the page cache; returns before
        the bytes arrive. A hint: errors are the caller's to ignore."""
        ...

    def cached(self, offset: int, length: int) -> int | None:
        """Bytes of ``[offset, offset + length)`` the page cache holds now (whole pages),
        or None when the kernel cannot say."""
        ...


@runtime_checkable
class AwaitableSource(Source, Protocol):
    """A source that fills over time (the swarm through the node agent): a reader can wait
    for a range to become available without reading it, when the bytes also land
    somewhere cheaper to read (the node cache)."""

    def await_range(self, offset: int, length: int) -> None:
        """Block until ``[offset, offset + length)`` is complete and verified; raises
        ``SourceError`` when it never will be (the filler failed or went away)."""
        ...
