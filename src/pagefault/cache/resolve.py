"""Resolve a remote URI through the node cache: from the catalog, or from the origin once.

A URI loaded before resolves from its catalog record: one HEAD per file confirms the
origin still has the same versions (none at all when offline), then headers and the
index come from cached pieces, so a warm load downloads no bytes from the origin.
Anything stale or unknown resolves from the origin as usual, with every shard put
behind a :class:`CachedFileSource` that tees what it fetches.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from pagefault.cache.catalog import FileRecord, UriRecord, file_key
from pagefault.cache.node import NodeCache
from pagefault.cache.source import CacheCounters, CachedFileSource
from pagefault.errors import NotFound, SourceError
from pagefault.formats import parse_index
from pagefault.manifest import PieceManifest, piece_count
from pagefault.sources import ResolvedModel, Source, resolve_sources
from pagefault.sources.memory import MemorySource
from pagefault.sources.remote import RemoteSource
from pagefault.sources.remote_dir import RemoteDirectory
from pagefault.sources.resolve import file_name, resolve_remote

if TYPE_CHECKING:
    from obstore import ObjectMeta

__all__ = ["resolve_cached"]

_HEADS = 16


def resolve_cached(uri: str, cache: NodeCache) -> ResolvedModel:
    """A resolved model whose every source reads through ``cache``."""
    record = cache.catalog.record(uri)
    if record is not None:
        model = _from_record(record, cache)
        if model is not None:
            return model
    return _from_origin(uri, cache)


def _from_record(record: UriRecord, cache: NodeCache) -> ResolvedModel | None:
    """The model as recorded, or None when the origin no longer has those versions (or
    the published digests are no longer all on record: then only the origin can say)."""
    digests = [
        cache.catalog.pieces(f.key, piece_count(f.size, record.piece_size)) for f in record.files
    ]
    if record.verified and any(None in file_digests for file_digests in digests):
        return None
    directory, _ = RemoteDirectory.split(record.uri)
    if cache.config.offline:
        origins = [directory.source(f.name, meta=_meta(f)) for f in record.files]
    else:
        origins = [directory.source(f.name) for f in record.files]
        if not _unchanged(record, origins):
            return None
    counters = CacheCounters()
    sources = _cached_sources(
        origins, record.files, digests, cache=cache, record=record, counters=counters
    )
    index = MemorySource(record.entry, record.index_text.encode()) if record.index_text else None
    parsed = parse_index(index.read_all(), name=record.uri) if index else None
    model = resolve_sources(sources, parsed, remote=True, index_source=index)
    return _attach(model, cache, record, counters)


def _from_origin(uri: str, cache: NodeCache) -> ResolvedModel:
    counters = CacheCounters()
    made: list[UriRecord] = []  # what wrap() learned about the files, for the catalog

    def wrap(shards: list[RemoteSource], pieces: PieceManifest | None) -> list[Source]:
        files = _identify(shards)
        piece_size = pieces.piece_size if pieces else cache.config.piece_size
        if pieces is not None:  # the published digests: recorded for later loads, used now
            published = [pieces.file(f.name).pieces for f in files]
            for file, file_digests in zip(files, published, strict=True):
                cache.catalog.learn_all(file.key, file_digests)
            digests: list[list[str | None]] = [list(d) for d in published]
        else:  # learned by earlier loads of these very versions, if any
            digests = [cache.catalog.pieces(f.key, piece_count(f.size, piece_size)) for f in files]
        record = UriRecord(uri, "", piece_size, tuple(files), verified=pieces is not None)
        made.append(record)
        return _cached_sources(
            shards, files, digests, cache=cache, record=record, counters=counters
        )

    model = resolve_remote(uri, wrap=wrap)
    partial = made[0]
    entry = model.index.name if model.index else partial.files[0].name
    text = model.index.read_all().decode() if model.index else None
    record = UriRecord(uri, entry, partial.piece_size, partial.files, partial.verified, text)
    with suppress(OSError):  # the catalog is a hint: without it the next load asks the origin
        cache.catalog.save(record)
    return _attach(model, cache, record, counters)


def _cached_sources(
    origins: Sequence[Source],
    files: Sequence[FileRecord],
    digests: Sequence[list[str | None]],
    *,
    cache: NodeCache,
    record: UriRecord,
    counters: CacheCounters,
) -> list[Source]:
    return [
        CachedFileSource(
            origin,
            cache,
            file,
            piece_size=record.piece_size,
            digests=file_digests,
            published=record.verified,
            counters=counters,
        )
        for origin, file, file_digests in zip(origins, files, digests, strict=True)
    ]


def _attach(
    model: ResolvedModel, cache: NodeCache, record: UriRecord, counters: CacheCounters
) -> ResolvedModel:
    """Hold a lease on the files while the model is open; report where bytes came from."""
    model.on_close.append(cache.lease(f.key for f in record.files))
    model.checked_piece_size = record.piece_size
    model.published = record.verified
    model.counters = counters.as_dict
    return model


def _identify(shards: Sequence[RemoteSource]) -> list[FileRecord]:
    """HEAD every shard at once; each file's key pins its size, ETag and version."""
    with ThreadPoolExecutor(min(_HEADS, len(shards))) as pool:
        list(pool.map(lambda shard: shard.size(), shards))
    return [_file_record(shard) for shard in shards]


def _file_record(shard: RemoteSource) -> FileRecord:
    meta = shard.meta
    size, etag, version = int(meta["size"]), meta["e_tag"], meta["version"]
    return FileRecord(
        file_name(shard.name), size, file_key(shard.name, size, etag, version), etag, version
    )


def _unchanged(record: UriRecord, shards: Sequence[RemoteSource]) -> bool:
    """Whether the origin still serves the recorded versions (one HEAD per file)."""
    try:
        current = _identify(shards)
    except (NotFound, SourceError):
        return False
    return [f.key for f in current] == [f.key for f in record.files]


def _meta(file: FileRecord) -> ObjectMeta:
    """Pin reads to the recorded version: a changed origin fails instead of mixing."""
    return {
        "path": file.name,
        "last_modified": datetime.now(timezone.utc),
        "size": file.size,
        "e_tag": file.etag,
        "version": file.version,
    }
