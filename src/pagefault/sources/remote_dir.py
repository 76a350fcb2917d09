"""A "directory" of a remote model: a bucket prefix or an HTTP path, and the files in it."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import obstore

from pagefault.errors import FormatError, NotFound
from pagefault.formats import INDEX_SUFFIX
from pagefault.formats.index import validate_shard_name
from pagefault.manifest import MANIFEST_NAME, PieceManifest
from pagefault.manifest.pieces import MAX_MANIFEST_BYTES
from pagefault.sources.object_store import store_for_uri
from pagefault.sources.remote import RemoteSource
from pagefault.sources.retry import RetryPolicy
from pagefault.sources.store_errors import map_store_errors

if TYPE_CHECKING:
    from obstore import ObjectMeta
    from obstore.store import ObjectStore

__all__ = ["RemoteDirectory"]

_PROBED = ("model" + INDEX_SUFFIX, "model.safetensors")  # HTTP cannot list: try these names


class RemoteDirectory:
    """Objects under one prefix; ``uri`` ends with ``/`` and names files by appending."""

    def __init__(self, store: ObjectStore, prefix: str, *, uri: str, retry: RetryPolicy) -> None:
        self._store = store
        self._prefix = prefix
        self.uri = uri
        self._retry = retry
        self._listable = urlsplit(uri).scheme not in ("http", "https")

    @classmethod
    def split(cls, uri: str, *, retry: RetryPolicy | None = None) -> tuple[RemoteDirectory, str]:
        """The directory holding ``uri`` and the file it names ("" when it names a prefix)."""
        store, key = store_for_uri(uri)
        head, _, last = key.rstrip("/").rpartition("/")
        if last.endswith((".safetensors", ".json")) and not key.endswith("/"):
            base = uri[: len(uri) - len(last)]
            prefix = f"{head}/" if head else ""
            return cls(store, prefix, uri=base, retry=retry or RetryPolicy()), last
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        base = uri if uri.endswith("/") else uri + "/"
        return cls(store, prefix, uri=base, retry=retry or RetryPolicy()), ""

    def source(self, name: str, *, meta: ObjectMeta | None = None) -> RemoteSource:
        """A file of this directory; with ``meta``, reads are pinned to that version unasked."""
        validate_shard_name(name, where=self.uri, suffixes=(".safetensors", ".json"))
        return RemoteSource(
            self._store, self._prefix + name, name=self.uri + name, retry=self._retry, meta=meta
        )

    def read(self, name: str, *, limit: int = MAX_MANIFEST_BYTES) -> bytes:
        """A small file (index, manifest), refusing anything over ``limit`` bytes."""
        source = self.source(name)
        if source.size() > limit:
            raise FormatError(f"{source.name}: {source.size()} bytes, over the {limit} limit")
        return source.read_all()

    def list_names(self) -> list[str]:
        """File names directly under the prefix (probed by name where the origin cannot list)."""
        if not self._listable:
            return [name for name in _PROBED if self._exists(name)]
        with map_store_errors(self.uri):
            listing = obstore.list_with_delimiter(self._store, self._prefix or None)
        return sorted(obj["path"].rsplit("/", 1)[-1] for obj in listing["objects"])

    def piece_manifest(self) -> PieceManifest | None:
        """The published piece manifest, or None when there is none."""
        try:
            data = self.read(MANIFEST_NAME)
        except NotFound:
            return None
        return PieceManifest.from_json(data, name=self.uri + MANIFEST_NAME)

    def _exists(self, name: str) -> bool:
        try:
            self.source(name).size()
        except NotFound:
            return False
        return True
