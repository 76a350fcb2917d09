"""Walk a list of buffers front to back by byte counts: fill them, or view their bytes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pagefault.errors import IntegrityError
from pagefault.sources.base import Buffer

__all__ = ["BufferCursor"]


class BufferCursor:
    """A position in the concatenation of ``buffers``; nothing is copied to move it."""

    def __init__(self, buffers: Sequence[Buffer]) -> None:
        self._buffers = [memoryview(b).cast("B") for b in buffers if b.nbytes]
        self.total = sum(b.nbytes for b in self._buffers)
        self.filled = 0
        self._index = 0
        self._position = 0

    @property
    def remaining(self) -> int:
        return self.total - self.filled

    def take(self, count: int) -> list[memoryview]:
        """Views of the next ``count`` bytes (one per buffer they span); advances past them."""
        if count > self.remaining:
            raise ValueError(f"{count} bytes asked, {self.remaining} left")
        views: list[memoryview] = []
        while count:
            target = self._buffers[self._index]
            part = target[self._position : self._position + count]
            views.append(part)
            count -= part.nbytes
            self.filled += part.nbytes
            self._position += part.nbytes
            if self._position == target.nbytes:
                self._index, self._position = self._index + 1, 0
        return views

    def write(self, data: Any) -> None:
        """Copy ``data`` into the next bytes; more than what is left is an origin's error."""
        view = memoryview(data).cast("B")
        if view.nbytes > self.remaining:
            raise IntegrityError(f"origin sent {view.nbytes - self.remaining} bytes past the range")
        for target in self.take(view.nbytes):
            target[:] = view[: target.nbytes]
            view = view[target.nbytes :]
