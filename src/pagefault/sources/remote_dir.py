"""A "directory" of a remote model: a bucket prefix or an HTTP path, and the files in it."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import obstore

from pagefault.errors import FormatError, NotFound, SourceError
from pagefault.formats import INDEX_SUFFIX
from pagefault.formats.index import validate_relative_path, validate_shard_name
from pagefault.manifest import MANIFEST_NAME, PieceManifest
from pagefault.manifest.pieces import MAX_MANIFEST_BYTES
from pagefault.sources.hub import HUB_SCHEME, hub_listing, pin_revision
from pagefault.sources.object_store import store_for_uri
from pagefault.sources.remote import RemoteSource
from pagefault.sources.retry import RetryPolicy
from pagefault.sources.store_errors import map_store_errors

if TYPE_CHECKING:
    from obstore import ObjectMeta
    from obstore.store import ObjectStore

__all__ = ["RemoteDirectory"]

_PROBED = ("model" + INDEX_SUFFIX, "model.safetensors")  # HTTP cannot list: try these names
_MAX_LISTING_BYTES = 4 * 1024 * 1024  # an autoindex page: generous for any model directory


_MAX_TREE_FILES = 10_000  # a model directory, not a bucket
_MAX_TREE_DEPTH = 4


class _Links(HTMLParser):
    """The plain file and sub-directory names an HTML directory listing links to."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self.directories: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href") if tag == "a" else None
        name = unquote(href or "")
        plain = name.removesuffix("/")
        if not plain or plain.startswith((".", "#", "?")) or any(c in plain for c in "/?#\\"):
            return
        (self.directories if name.endswith("/") else self.names).append(plain)


class RemoteDirectory:
    """Objects under one prefix; ``uri`` ends with ``/`` and names files by appending."""

    def __init__(self, store: ObjectStore, prefix: str, *, uri: str, retry: RetryPolicy) -> None:
        self._store = store
        self._prefix = prefix
        self.uri = uri
        self._retry = retry
        self._scheme = urlsplit(uri).scheme
        self._listable = self._scheme not in ("http", "https", HUB_SCHEME)

    @classmethod
    def split(cls, uri: str, *, retry: RetryPolicy | None = None) -> tuple[RemoteDirectory, str]:
        """The directory holding ``uri`` and the file it names ("" when it names a prefix).
        A Hub URI is pinned to its revision's commit first: every file then comes from it."""
        if uri.startswith(f"{HUB_SCHEME}://"):
            uri = pin_revision(uri)
        store, key = store_for_uri(uri)
        head, _, last = key.rstrip("/").rpartition("/")
        if last.endswith((".safetensors", ".json")) and not key.endswith("/"):
            base = uri[: len(uri) - len(last)]
            prefix = f"{head}/" if head else ""
            return cls(store, prefix, uri=base, retry=retry or RetryPolicy()), last
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        base = uri if uri.endswith("/") else uri + "/"
        return cls(store, prefix, uri=base, retry=retry or RetryPolicy()), ""

    def source(
        self, name: str, *, meta: ObjectMeta | None = None, any_suffix: bool = False
    ) -> RemoteSource:
        """A file of this directory; with ``meta``, reads are pinned to that version unasked.
        Model files are ``.safetensors``/``.json``; ``any_suffix`` opens the rest (tokenizer
        files, READMEs) under the same plain-name rule."""
        if any_suffix:
            validate_relative_path(name, where=self.uri)
        else:
            validate_shard_name(name, where=self.uri, suffixes=(".safetensors", ".json"))
        return RemoteSource(
            self._store, self._prefix + name, name=self.uri + name, retry=self._retry, meta=meta
        )

    def read(self, name: str, *, limit: int = MAX_MANIFEST_BYTES) -> bytes:
        """A small file (index, manifest), refusing anything over ``limit`` bytes."""
        source = self.source(name)
        try:
            if source.size() > limit:
                raise FormatError(f"{source.name}: {source.size()} bytes, over the {limit} limit")
            return source.read_all()
        finally:
            source.close()

    def list_names(self) -> list[str]:
        """File names directly under the prefix. An HTTP origin cannot list: its HTML
        directory listing (autoindex) is read where it serves one, else names are probed."""
        if self._scheme == HUB_SCHEME:
            return hub_listing(self.uri)
        if not self._listable:
            listed = self._autoindex()
            return listed if listed is not None else [n for n in _PROBED if self._exists(n)]
        with map_store_errors(self.uri):
            listing = obstore.list_with_delimiter(self._store, self._prefix or None)
        return sorted(obj["path"].rsplit("/", 1)[-1] for obj in listing["objects"])

    def list_tree(self) -> list[str]:
        """Every file under the prefix, sub-directories included, as relative paths."""
        if self._scheme == HUB_SCHEME:
            found = hub_listing(self.uri, recursive=True)
        elif not self._listable:
            found = self._autoindex_tree("", 0)
        else:
            with map_store_errors(self.uri):
                batches = obstore.list(self._store, self._prefix or None, chunk_size=1000)
                found = [meta["path"][len(self._prefix) :] for batch in batches for meta in batch]
        if len(found) > _MAX_TREE_FILES:
            raise FormatError(f"{self.uri}: over {_MAX_TREE_FILES} files: not a model directory")
        return sorted(found)

    def _autoindex_tree(self, sub: str, depth: int) -> list[str]:
        links = self._links(sub) if depth <= _MAX_TREE_DEPTH else None
        if links is None:
            return [] if sub else [n for n in _PROBED if self._exists(n)]
        found = [sub + name for name in links.names]
        for directory in links.directories:
            found += self._autoindex_tree(f"{sub}{directory}/", depth + 1)
            if len(found) > _MAX_TREE_FILES:
                break
        return found

    def _autoindex(self) -> list[str] | None:
        """The names an HTML listing of the directory links to, or None without one."""
        links = self._links("")
        return sorted(set(links.names)) if links is not None else None

    def _links(self, sub: str) -> _Links | None:
        """The parsed HTML listing of ``sub`` (relative, ``/``-ended), or None."""
        try:
            with map_store_errors(self.uri + sub):
                result = obstore.get(self._store, self._prefix + sub)
                html = result.attributes.get("Content-Type", "").startswith("text/html")
                body = (
                    bytes(result.bytes())
                    if html and result.meta["size"] <= _MAX_LISTING_BYTES
                    else b""
                )
        except (NotFound, SourceError):
            return None
        if not body:
            return None
        links = _Links()
        links.feed(body.decode("utf-8", errors="replace"))
        return links

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
