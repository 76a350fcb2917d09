"""A remote model through the node cache: its description from the catalog or the origin,
and each file's chain put behind a :class:`CachedFileSource`.

A URI loaded before is described from its catalog record: one HEAD per file confirms the
origin still has the same versions (none at all when offline), then headers and the
index come from cached pieces, so a warm load downloads no bytes from the origin.
Anything stale or unknown is described by the origin and remembered for next time.

These are steps of one downward pass driven by ``pagefault.api.chain``: describe,
choose the links below the cache, put the cache on top, read the headers.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass

from pagefault.cache.catalog import FileRecord, UriRecord, file_key
from pagefault.cache.node import NodeCache
from pagefault.cache.source import CachedFileSource
from pagefault.errors import NotFound, SourceError
from pagefault.manifest import PieceManifest, piece_count
from pagefault.sources.chain import ChainSource, SourceCounters
from pagefault.sources.describe import ModelDescription, RemoteFile, describe, identify
from pagefault.sources.remote_dir import RemoteDirectory
from pagefault.sources.resolve import Provenance

__all__ = ["CatalogEntry", "cached_description", "cached_sources", "catalog_entry", "remember"]


@dataclass(frozen=True)
class CatalogEntry:
    """A URI's catalog record and the known digest of each piece of its files, read once
    per load (each digest is a file of its own in the catalog)."""

    record: UriRecord
    digests: tuple[list[str | None], ...]  # per file, per piece; None where unknown

    @classmethod
    def read(cls, record: UriRecord, cache: NodeCache) -> CatalogEntry:
        return cls(
            record,
            tuple(
                cache.catalog.pieces(f.key, piece_count(f.size, record.piece_size))
                for f in record.files
            ),
        )

    def held_by(self, cache: NodeCache) -> bool:
        """Whether some tier holds every piece (a stat per piece): then nothing below the
        cache will be asked."""
        return all(
            digest is not None and cache.holds(digest)
            for file_digests in self.digests
            for digest in file_digests
        )


def catalog_entry(uri: str, cache: NodeCache) -> CatalogEntry | None:
    """What the catalog says of ``uri`` (None when it has no record)."""
    record = cache.catalog.record(uri)
    return None if record is None else CatalogEntry.read(record, cache)


def cached_description(
    uri: str, cache: NodeCache, entry: CatalogEntry | None = None
) -> tuple[ModelDescription, CatalogEntry]:
    """The model at ``uri`` from its catalog ``entry`` (read here when not given) if the
    origin still serves it, else described by the origin (and remembered).

    The entry returned is the one given when it still holds."""
    entry = entry or catalog_entry(uri, cache)
    if entry is not None:
        description = _from_entry(entry, cache)
        if description is not None:
            return description, entry
    description = describe(uri)
    record = remember(description, cache)
    if description.pieces is None:  # learned by earlier loads of these versions, if any
        return description, CatalogEntry.read(record, cache)
    published: tuple[list[str | None], ...] = tuple(
        list(description.pieces.file(f.name).pieces) for f in record.files
    )
    return description, CatalogEntry(record, published)


def remember(
    description: ModelDescription, cache: NodeCache, *, learned: PieceManifest | None = None
) -> UriRecord:
    """Record what ``description`` resolved to, and its published digests, for later loads.

    ``learned``: digests from elsewhere (the swarm's manifest, hashed by a peer) for an
    origin that publishes none; recorded as learned, not as the origin's word. The
    catalog is a hint: a record that cannot be written only costs the next load a trip
    to the origin."""
    pieces = description.pieces or learned
    piece_size = pieces.piece_size if pieces else cache.config.piece_size
    files = tuple(_file_record(description, f) for f in description.files)
    if pieces is not None:
        for file in files:
            cache.catalog.learn_all(file.key, pieces.file(file.name).pieces)
    index_text = description.index.decode() if description.index is not None else None
    published = description.pieces is not None
    record = UriRecord(description.uri, description.entry, piece_size, files, published, index_text)
    with suppress(OSError):
        cache.catalog.save(record)
    return record


def cached_sources(
    entry: CatalogEntry,
    chains: Sequence[ChainSource],
    cache: NodeCache,
    counters: SourceCounters,
    *,
    streaming: bool = False,
) -> tuple[list[CachedFileSource], Provenance]:
    """Each file's chain behind the cache, and what the model's sources then guarantee
    (pieces checked at the record's piece size; a read lease on the files until closed)."""
    record = entry.record
    sources = [
        CachedFileSource(
            chain,
            cache,
            file,
            piece_size=record.piece_size,
            digests=digests,
            published=record.verified,
            counters=counters,
        )
        for chain, file, digests in zip(chains, record.files, entry.digests, strict=True)
    ]
    provenance = Provenance(
        checked_piece_size=record.piece_size,
        published=record.verified,
        counters=counters,
        on_close=(cache.lease(f.key for f in record.files),),
        streaming=streaming,
    )
    return sources, provenance


def _from_entry(entry: CatalogEntry, cache: NodeCache) -> ModelDescription | None:
    """The model as recorded, or None when the origin no longer has those versions (or
    the published digests are no longer all on record: then only the origin can say)."""
    record = entry.record
    if record.verified and any(None in file_digests for file_digests in entry.digests):
        return None
    directory, _ = RemoteDirectory.split(record.uri)
    files = tuple(RemoteFile(f.name, f.size, f.etag, f.version) for f in record.files)
    if not cache.config.offline and not _unchanged(directory, files):
        return None
    index = record.index_text.encode() if record.index_text is not None else None
    return ModelDescription(record.uri, directory.uri, record.entry, files, index)


def _unchanged(directory: RemoteDirectory, files: Sequence[RemoteFile]) -> bool:
    """Whether the origin still serves the recorded versions (one HEAD per file)."""
    try:
        current = identify([directory.source(f.name) for f in files])
    except (NotFound, SourceError):
        return False
    return current == list(files)


def _file_record(description: ModelDescription, file: RemoteFile) -> FileRecord:
    key = file_key(description.where(file.name), file.size, file.etag, file.version)
    return FileRecord(file.name, file.size, key, file.etag, file.version)
