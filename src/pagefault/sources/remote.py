"""One object behind an HTTP(S) origin or an object store, read with ranged GETs.

Every read is pinned to the ETag (and version) seen when the source was opened, so a
model replaced mid-load fails loudly instead of mixing two versions. A body that breaks
off mid-way is resumed from the last byte received, with backoff and jitter.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import obstore
from obstore import exceptions as obs_errors

from pagefault.errors import IntegrityError, SourceError
from pagefault.sources.base import Buffer
from pagefault.sources.cursor import BufferCursor
from pagefault.sources.object_store import store_for_uri
from pagefault.sources.retry import RETRYABLE, RetryPolicy
from pagefault.sources.store_errors import map_store_errors
from pagefault.sources.whole_body import WholeBody, warn_no_range

if TYPE_CHECKING:
    from obstore import ObjectMeta
    from obstore.store import ObjectStore

__all__ = ["RemoteSource"]

_CHUNK = 1024 * 1024  # obstore hands the body over in chunks of at least this size


class TruncatedBody(ConnectionError):
    """The origin closed the body before the requested range was complete."""


class RemoteSource:
    """A remote object as a :class:`~pagefault.sources.base.Source`; opens (HEADs) lazily."""

    def __init__(
        self,
        store: ObjectStore,
        key: str,
        *,
        name: str,
        retry: RetryPolicy | None = None,
        meta: ObjectMeta | None = None,
    ) -> None:
        self._store = store
        self._key = key
        self._name = name
        self._retry = retry or RetryPolicy()
        self._meta = meta
        self._lock = threading.Lock()
        self._whole: WholeBody | None = None  # set once the origin shows it ignores Range

    @classmethod
    def from_uri(cls, uri: str, *, retry: RetryPolicy | None = None) -> RemoteSource:
        store, key = store_for_uri(uri)
        return cls(store, key, name=uri, retry=retry)

    @property
    def name(self) -> str:
        return self._name

    @property
    def etag(self) -> str | None:
        return self._head()["e_tag"]

    @property
    def meta(self) -> ObjectMeta:
        """Size, ETag and version, from one HEAD (the first time it is needed)."""
        return self._head()

    def size(self) -> int:
        return int(self._head()["size"])

    def read_into(self, offset: int, buffers: Sequence[Buffer]) -> None:
        cursor = BufferCursor(buffers)
        end = offset + cursor.total
        if end > self.size():
            raise SourceError(
                f"{self.name}: range [{offset}, {end}) is past the end ({self.size()})"
            )
        if self._whole is not None:
            self._whole.read_into(offset, buffers)
            return
        failures = 0
        with map_store_errors(self.name):
            while cursor.remaining:
                received = cursor.filled
                try:
                    self._fetch(offset + cursor.filled, end, cursor)
                except obs_errors.NotSupportedError as exc:
                    if "Range" not in str(exc):
                        raise
                    self._whole_body().read_into(offset, buffers)
                    return
                except RETRYABLE:
                    failures = 1 if cursor.filled > received else failures + 1
                    if not self._retry.backoff(failures):
                        raise

    def read_all(self) -> bytes:
        """The whole object (indexes, manifests: small files)."""
        data = bytearray(self.size())
        self.read_into(0, [memoryview(data)])
        return bytes(data)

    def close(self) -> None:
        """Drop a whole-body download; connections are pooled per store by obstore."""
        with self._lock:
            whole, self._whole = self._whole, None
        if whole is not None:
            whole.close()

    def _whole_body(self) -> WholeBody:
        """Switch to one shared whole-object GET (the origin ignores Range), saying so once
        per origin."""
        pins, size = self._pins(), self.size()
        with self._lock:
            if self._whole is None:
                warn_no_range(self.name)
                self._whole = WholeBody(
                    self._store, self._key, name=self.name, size=size, pins=pins, retry=self._retry
                )
            return self._whole

    def _pins(self) -> dict[str, Any]:
        """GET options that hold every read to the version seen at open (ETag, version)."""
        meta = self._head()
        pins: dict[str, Any] = {}
        if meta["e_tag"]:
            pins["if_match"] = meta["e_tag"]
        if meta["version"]:
            pins["version"] = meta["version"]
        return pins

    def _head(self) -> ObjectMeta:
        with self._lock:
            if self._meta is None:
                with map_store_errors(self.name):
                    self._meta = obstore.head(self._store, self._key)
            return self._meta

    def _fetch(self, start: int, end: int, cursor: BufferCursor) -> None:
        options = {"range": (start, end), **self._pins()}
        result = obstore.get(self._store, self._key, options=options)  # type: ignore[arg-type]
        if tuple(result.range) != (start, end):
            raise IntegrityError(
                f"{self.name}: asked for bytes [{start}, {end}), origin sent {tuple(result.range)}"
            )
        expected = cursor.filled + (end - start)
        for chunk in result.stream(min_chunk_size=_CHUNK):
            cursor.write(chunk)
        if cursor.filled != expected:
            raise TruncatedBody(f"body ended {expected - cursor.filled} bytes early")
