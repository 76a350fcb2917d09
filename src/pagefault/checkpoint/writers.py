"""Where a checkpoint's bytes go: the writer protocol, the object-store writer, the chooser.

A writer is called in this order (``Persister`` does it):

1. ``open()`` — in the caller's thread, before the snapshot: check the destination and
   prepare a staging area, so that mistakes fail fast.
2. ``write_file(name, chunks)`` — once per shard, shards concurrently from several
   threads; ``chunks`` yields the file's bytes in order. Nothing may become visible
   under ``name`` as a loadable checkpoint yet.
3. ``commit(shards, small)`` — after every shard is durable: write the small files
   (piece manifest, then the index) and make the checkpoint visible, the index last.
4. ``abort()`` — on any failure instead of ``commit``; leaves the previous checkpoint.

``LocalDirectoryWriter`` (``local.py``) commits with an atomic directory swap;
``ObjectStoreWriter`` uploads each shard as one multipart upload (an object appears
only when its upload completes) and uploads the index last.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import obstore
import obstore.store
from obstore import exceptions as obs_errors

from pagefault.checkpoint.local import LocalDirectoryWriter
from pagefault.checkpoint.plan import INDEX_NAME
from pagefault.errors import CheckpointError, NotFound
from pagefault.manifest import MANIFEST_NAME
from pagefault.sources.object_store import store_for_uri
from pagefault.sources.store_errors import map_store_errors

if TYPE_CHECKING:
    from obstore.store import ObjectStore

__all__ = [
    "DEFAULT_PART_SIZE",
    "CheckpointWriter",
    "ObjectStoreWriter",
    "open_writer",
]

DEFAULT_PART_SIZE = 16 * 1024 * 1024  # multipart part size: 10,000 parts cover 156 GiB
_UPLOAD_CONCURRENCY = 8


class CheckpointWriter(Protocol):
    """Destination of one save; see the module docstring for the call order."""

    location: str

    def open(self) -> None: ...

    def write_file(self, name: str, chunks: Iterable[memoryview]) -> None: ...

    def commit(self, shards: Sequence[str], small: Sequence[tuple[str, bytes]]) -> None: ...

    def abort(self) -> None: ...


class ObjectStoreWriter:
    """Upload a checkpoint under ``prefix`` of an object store (S3, GCS, Azure, ...).

    Object stores cannot swap a set of objects atomically. Shards are uploaded first
    (each invisible until its multipart upload completes), then the piece manifest,
    then the index: the checkpoint becomes loadable only with its last object. Saving
    over a prefix that already holds a checkpoint first deletes that checkpoint's
    index, so no mix of old and new shards ever loads; the old checkpoint is lost
    from then on. Save each checkpoint under its own prefix to keep the previous one.
    """

    def __init__(
        self,
        store: ObjectStore,
        prefix: str,
        *,
        location: str,
        part_size: int = DEFAULT_PART_SIZE,
        concurrency: int = _UPLOAD_CONCURRENCY,
    ) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self.location = location
        self.part_size = part_size
        self.concurrency = concurrency
        self._uploaded: list[str] = []

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def open(self) -> None:
        """Unpublish a checkpoint already at this prefix (index first, then manifest)."""
        for name in (INDEX_NAME, MANIFEST_NAME):
            with (
                map_store_errors(f"{self.location}/{name}", saving=True),
                contextlib.suppress(FileNotFoundError, obs_errors.NotFoundError),  # none there
            ):
                obstore.delete(self.store, self.key(name))

    def write_file(self, name: str, chunks: Iterable[memoryview]) -> None:
        with map_store_errors(f"{self.location}/{name}", saving=True):
            obstore.put(
                self.store,
                self.key(name),
                iter(chunks),
                chunk_size=self.part_size,
                max_concurrency=self.concurrency,
            )
        self._uploaded.append(name)

    def commit(self, shards: Sequence[str], small: Sequence[tuple[str, bytes]]) -> None:
        """Upload the small files in order; the caller passes the index last."""
        for name, data in small:
            with map_store_errors(f"{self.location}/{name}", saving=True):
                obstore.put(self.store, self.key(name), data, use_multipart=False)

    def abort(self) -> None:
        """Delete the shards uploaded so far (nothing references them: no index)."""
        for name in self._uploaded:  # best effort: without an index they cannot load anyway
            with contextlib.suppress(obs_errors.BaseError, OSError):
                obstore.delete(self.store, self.key(name))
        self._uploaded.clear()


def open_writer(
    dest: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> CheckpointWriter:
    """A local directory writer for paths and ``file://`` URIs, else an object-store writer."""
    text = os.fspath(dest)
    if "://" not in text:
        return LocalDirectoryWriter(text)
    if text.startswith("file://"):
        return LocalDirectoryWriter(text[len("file://") :])
    try:
        store, prefix = store_for_uri(text, storage_options)
    except NotFound as exc:  # not a URI pagefault can write to
        raise CheckpointError(str(exc)) from exc
    return ObjectStoreWriter(store, prefix, location=text.rstrip("/"))
