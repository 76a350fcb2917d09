"""One whole-object GET shared by every read of the object: for origins that ignore Range.

A plain static server (``python -m http.server``, many internal mirrors) answers a ranged
GET with the whole body. Range is an optimisation, so such an origin still serves loads:
the body streams once, in order, into an unlinked temporary file (the page cache holds
it; the disk space returns when the source closes), and each read waits until its bytes
have arrived. A body that breaks off is fetched again from the start (pinned to the
same ETag), skipping what was already kept. Files still stream in parallel with each
other; verification above this source is unchanged.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import obstore

from pagefault.errors import PagefaultError, SourceError
from pagefault.sources.base import Buffer
from pagefault.sources.retry import RETRYABLE, RetryPolicy
from pagefault.sources.store_errors import store_error

if TYPE_CHECKING:
    from obstore.store import ObjectStore

__all__ = ["WholeBody", "warn_no_range"]

_CHUNK = 1024 * 1024
_log = logging.getLogger(__name__)
_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_no_range(uri: str) -> None:
    """Say once per origin that its files come whole, and what that costs."""
    parts = urlsplit(uri)
    origin = f"{parts.scheme}://{parts.netloc}"
    with _warned_lock:
        if origin in _warned:
            return
        _warned.add(origin)
    _log.warning(
        "%s ignores HTTP Range requests: each file is downloaded whole, in order "
        "(no parallel ranges within a file; a broken body restarts from its start)",
        origin,
    )


class WholeBody:
    """The object ``key`` arriving in order; ``read_into`` blocks until its range is in."""

    def __init__(
        self,
        store: ObjectStore,
        key: str,
        *,
        name: str,
        size: int,
        pins: dict[str, Any],
        retry: RetryPolicy,
    ) -> None:
        self._store = store
        self._key = key
        self._name = name
        self._pins = pins  # the GET options pinning the version (the caller's ETag/version)
        self._retry = retry
        self._size = size
        self._file = tempfile.TemporaryFile(prefix="pagefault-body-")  # noqa: SIM115 - closed in close()
        self._received = 0
        self._error: BaseException | None = None
        self._closed = False
        self._arrived = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="pagefault-whole-body", daemon=True)
        self._thread.start()

    def read_into(self, offset: int, buffers: Sequence[Buffer]) -> None:
        """Copy ``[offset, offset + len(buffers))`` out once it has arrived."""
        end = offset + sum(memoryview(b).nbytes for b in buffers)
        with self._arrived:
            self._arrived.wait_for(lambda: self._received >= end or self._error is not None)
            if self._received < end:
                error = self._error
                if isinstance(error, PagefaultError):
                    raise error
                raise store_error(error or ConnectionError("closed"), self._name) from error
        done = os.preadv(self._file.fileno(), list(buffers), offset)
        if done != end - offset:
            raise SourceError(f"{self._name}: short read of the downloaded body")

    def close(self) -> None:
        with self._arrived:
            self._closed = True
        self._file.close()  # the thread sees the closed flag and stops at its next chunk

    def _run(self) -> None:
        failures = 0
        while True:
            kept = self._received
            try:
                self._stream_once()
                return
            except Exception as exc:
                if self._closed:
                    return
                failures = 1 if self._received > kept else failures + 1
                if not isinstance(exc, RETRYABLE) or not self._retry.backoff(failures):
                    with self._arrived:
                        self._error = exc
                        self._arrived.notify_all()
                    return

    def _stream_once(self) -> None:
        result = obstore.get(self._store, self._key, options=self._pins)  # type: ignore[arg-type]
        position = 0
        for chunk in result.stream(min_chunk_size=_CHUNK):
            if self._closed:
                return
            view = memoryview(chunk)
            if position + len(view) > self._size:
                raise SourceError(f"{self._name}: the body is longer than its {self._size} bytes")
            skip = min(len(view), max(0, self._received - position))  # kept by an earlier try
            position += len(view)
            if skip < len(view):
                os.pwrite(self._file.fileno(), view[skip:], position - len(view) + skip)
                with self._arrived:
                    self._received = position
                    self._arrived.notify_all()
        if position != self._size:
            raise ConnectionError(f"body ended at byte {position} of {self._size}")
