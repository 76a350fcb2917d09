"""An in-memory source: the fake for tests and a source for bytes already in RAM."""

from __future__ import annotations

from collections.abc import Sequence

from pagefault.errors import SourceError
from pagefault.sources.base import Buffer

__all__ = ["MemorySource"]


class MemorySource:
    """Serves ``data`` as a file named ``name``."""

    def __init__(self, name: str, data: bytes | bytearray | memoryview) -> None:
        self._name = name
        self._data = memoryview(data).cast("B")

    @property
    def name(self) -> str:
        return self._name

    def size(self) -> int:
        return len(self._data)

    def read_all(self) -> bytes:
        return bytes(self._data)

    def read_into(self, offset: int, buffers: Sequence[Buffer]) -> None:
        for buf in buffers:
            end = offset + len(buf)
            if offset < 0 or end > len(self._data):
                raise SourceError(
                    f"{self._name}: range [{offset}, {end}) is outside "
                    f"the {len(self._data)}-byte file"
                )
            buf[:] = self._data[offset:end]
            offset = end

    def close(self) -> None:
        """Nothing to release."""
