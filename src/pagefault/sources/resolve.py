"""Turn what the user passed (file, index, directory, URI, prefix) into a manifest and sources.

Local paths and remote URIs (``s3://``, ``gs://``, ``az://``, ``http(s)://``) resolve the
same way: a ``.safetensors`` file, a sharded index, or a directory/prefix holding one of
them. A piece manifest (``pagefault.manifest.json``) beside the model is picked up too,
so the pipeline can verify every piece that crossed a network.

A remote model is first described (:mod:`pagefault.sources.describe`); whoever opens it
chooses each file's source (origin only here; the node cache and the swarm in
``pagefault.api.chain``) and :func:`open_description` reads the headers through them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pagefault.errors import IntegrityError, NotFound
from pagefault.formats import (
    HEADER_PREFIX_BYTES,
    SafetensorsHeader,
    ShardedIndex,
    parse_header,
    parse_header_length,
    parse_index,
)
from pagefault.manifest import MANIFEST_NAME, Manifest, PieceManifest, build_manifest
from pagefault.sources.base import Source
from pagefault.sources.chain import SourceCounters
from pagefault.sources.describe import ModelDescription, describe, file_name, pick_model_file
from pagefault.sources.local import LocalFileSource
from pagefault.sources.memory import MemorySource
from pagefault.sources.object_store import is_remote, local_path

__all__ = [
    "SPECULATIVE_HEADER_BYTES",
    "Provenance",
    "ResolvedModel",
    "file_name",
    "open_description",
    "read_header",
    "resolve",
    "resolve_sources",
]

SPECULATIVE_HEADER_BYTES = 256 * 1024  # a loader's first read of each file
_HEADER_FETCHERS = 16  # shard headers are fetched concurrently: remote round trips dominate


@dataclass(frozen=True)
class Provenance:
    """What the sources of a model do beyond delivering bytes, set by whoever chose them.

    ``checked_piece_size``: the sources check every piece themselves (the node cache), so
    the loader only plans reads on those boundaries. ``published``: they check against the
    origin's manifest (not only at-rest sums). ``counters``: bytes by where they came from.
    ``on_close``: releases to run when the model is closed (the cache's read lease).
    ``streaming``: bytes arrive over time (the swarm fills them): the loader reads in small
    requests, so each tensor is handed out as soon as its own pieces are in.
    """

    checked_piece_size: int | None = None
    published: bool = False
    counters: SourceCounters | None = None
    on_close: tuple[Callable[[], None], ...] = ()
    streaming: bool = False


@dataclass
class ResolvedModel:
    """A manifest, one open source per manifest file (same order), raw header bytes
    (prefix included) of each file, and the piece manifest if one was published.
    ``index`` serves the index file's bytes exactly as read (and verified) while
    resolving, under its file name. Close when done (``provenance.on_close`` runs then)."""

    manifest: Manifest
    sources: list[Source]
    headers: list[bytes]
    pieces: PieceManifest | None = None
    remote: bool = False
    index: MemorySource | None = None
    provenance: Provenance = Provenance()
    _closed: bool = field(default=False, init=False, repr=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for source in [*self.sources, *([self.index] if self.index else [])]:
            source.close()
        for release in self.provenance.on_close:
            release()

    def __enter__(self) -> ResolvedModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def resolve(source: str | os.PathLike[str]) -> ResolvedModel:
    """Resolve a ``.safetensors`` file, a sharded index, or a directory holding either."""
    if is_remote(source):
        description = describe(str(source))
        return open_description(description, description.origins())
    path = local_path(source)
    if not path.exists():
        raise NotFound(f"{path}: no such file or directory")
    if path.is_dir():
        path = _pick_in_directory(path)
    pieces = _local_pieces(path.parent / MANIFEST_NAME)
    if path.name.endswith(".index.json"):
        index, data = _read_index(path)
        shards = [LocalFileSource(path.parent / shard) for shard in index.shards]
        index_source = MemorySource(path.name, data)
        return resolve_sources(shards, index, pieces=pieces, index_source=index_source)
    return resolve_sources([LocalFileSource(path)], pieces=pieces)


def resolve_sources(
    sources: Sequence[Source],
    index: ShardedIndex | None = None,
    *,
    pieces: PieceManifest | None = None,
    remote: bool = False,
    index_source: MemorySource | None = None,
    provenance: Provenance = Provenance(),
) -> ResolvedModel:
    """Read each source's header and build the manifest; closes the sources on failure.

    With an index, ``sources`` must be in ``index.shards`` order.
    """
    try:
        names = index.shards if index is not None else [file_name(s.name) for s in sources]
        with ThreadPoolExecutor(min(_HEADER_FETCHERS, max(1, len(sources)))) as pool:
            fetched = list(pool.map(_fetch_header, sources))
        headers = [(name, parsed) for name, (_, parsed) in zip(names, fetched, strict=True)]
        manifest = build_manifest(headers, index)
        if pieces is not None:
            _check_pieces(pieces, manifest, sources)
        raw = [data for data, _ in fetched]
        return ResolvedModel(manifest, list(sources), raw, pieces, remote, index_source, provenance)
    except BaseException:
        for src in sources:
            src.close()
        for release in provenance.on_close:
            release()
        raise


def open_description(
    description: ModelDescription,
    sources: Sequence[Source],
    *,
    provenance: Provenance = Provenance(),
) -> ResolvedModel:
    """Read the headers of a described remote model through ``sources`` (one per file)."""
    index = description.parsed_index()
    return resolve_sources(
        sources,
        index,
        pieces=description.pieces,
        remote=True,
        index_source=(
            MemorySource(description.entry, description.index)
            if description.index is not None
            else None
        ),
        provenance=provenance,
    )


def read_header(source: Source) -> SafetensorsHeader:
    """Fetch and validate a source's header: the prefix first, so its length is bounded."""
    return _fetch_header(source)[1]


def _fetch_header(source: Source) -> tuple[bytes, SafetensorsHeader]:
    """One read of the first bytes usually holds the whole header: one round trip, not two."""
    size = source.size()
    first = bytearray(min(size, SPECULATIVE_HEADER_BYTES))
    if size >= HEADER_PREFIX_BYTES:  # a shorter file is a FormatError below, not a short read
        source.read_into(0, [memoryview(first)])
    length = parse_header_length(
        bytes(first[:HEADER_PREFIX_BYTES]), file_size=size, name=source.name
    )
    end = HEADER_PREFIX_BYTES + length
    if end > len(first):
        rest = bytearray(end - len(first))
        source.read_into(len(first), [memoryview(rest)])
        first += rest
    raw = bytes(first[:end])
    return raw, parse_header(raw[HEADER_PREFIX_BYTES:], file_size=size, name=source.name)


def _check_pieces(pieces: PieceManifest, manifest: Manifest, sources: Sequence[Source]) -> None:
    """The published digests must describe exactly these files, at these sizes."""
    for entry, source in zip(manifest.files, sources, strict=True):
        digest = pieces.file(entry.name)
        if digest.size != source.size():
            raise IntegrityError(
                f"{source.name}: {source.size()} bytes, but {MANIFEST_NAME} says {digest.size}"
            )


def _pick_in_directory(directory: Path) -> Path:
    names = sorted(p.name for p in directory.iterdir() if p.is_file())
    return directory / pick_model_file(names, where=str(directory))


def _local_pieces(path: Path) -> PieceManifest | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise NotFound(f"{path}: cannot read piece manifest: {exc.strerror}") from exc
    return PieceManifest.from_json(data, name=str(path))


def _read_index(path: Path) -> tuple[ShardedIndex, bytes]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NotFound(f"{path}: cannot read index: {exc.strerror}") from exc
    index = parse_index(data, name=str(path))
    missing = [shard for shard in index.shards if not (path.parent / shard).is_file()]
    if missing:
        raise NotFound(f"{path}: shards listed in the index are missing: {', '.join(missing)}")
    return index, data
