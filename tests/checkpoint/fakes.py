"""An in-memory ``CheckpointWriter`` for tests: keeps files in a dict, can fail or block."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from pagefault.errors import CheckpointError


class MemoryWriter:
    """The writer protocol in memory; ``fail_on``: shard-name prefix to fail, ``gate``: block."""

    def __init__(self, *, fail_on: str | None = None, gate: threading.Event | None = None) -> None:
        self.location = "memory://test"
        self.files: dict[str, bytes] = {}
        self.committed: dict[str, bytes] | None = None
        self.aborted = False
        self.fail_on = fail_on
        self.gate = gate
        self._lock = threading.Lock()

    def open(self) -> None:
        self.files.clear()

    def write_file(self, name: str, chunks: Iterable[memoryview]) -> None:
        data = bytearray()
        for chunk in chunks:
            if self.gate is not None:
                self.gate.wait()
            if self.fail_on is not None and name.startswith(self.fail_on):
                raise OSError(28, "No space left on device", name)
            data += chunk
        with self._lock:
            self.files[name] = bytes(data)

    def commit(self, shards: Sequence[str], small: Sequence[tuple[str, bytes]]) -> None:
        if set(shards) != set(self.files):
            raise CheckpointError("commit before every shard was written")
        self.committed = {**self.files, **dict(small)}
        self.order = [name for name, _ in small]

    def abort(self) -> None:
        self.aborted = True
