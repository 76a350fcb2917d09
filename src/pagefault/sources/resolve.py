"""Turn what the user passed (file, index, directory, URI, prefix) into a manifest and sources.

Local paths and remote URIs (``s3://``, ``gs://``, ``az://``, ``http(s)://``) resolve the
same way: a ``.safetensors`` file, a sharded index, or a directory/prefix holding one of
them. A piece manifest (``pagefault.manifest.json``) beside the model is picked up too,
so the pipeline can verify every piece that crossed a network.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pagefault.errors import IntegrityError, NotFound, PagefaultError
from pagefault.formats import (
    HEADER_PREFIX_BYTES,
    INDEX_SUFFIX,
    SafetensorsHeader,
    ShardedIndex,
    parse_header,
    parse_header_length,
    parse_index,
)
from pagefault.manifest import (
    MANIFEST_NAME,
    Manifest,
    PieceHasher,
    PieceManifest,
    build_manifest,
)
from pagefault.sources.base import Source
from pagefault.sources.local import LocalFileSource
from pagefault.sources.memory import MemorySource
from pagefault.sources.object_store import is_remote
from pagefault.sources.remote import RemoteSource
from pagefault.sources.remote_dir import RemoteDirectory

__all__ = [
    "ResolvedModel",
    "ShardWrapper",
    "file_name",
    "pick_model_file",
    "read_header",
    "resolve",
    "resolve_remote",
    "resolve_sources",
]

DEFAULT_INDEX_NAME = "model" + INDEX_SUFFIX
_SPECULATIVE_HEADER_BYTES = 256 * 1024
_HEADER_FETCHERS = 16  # shard headers are fetched concurrently: remote round trips dominate

# Puts a remote model's shard sources behind something else, given the piece manifest.
ShardWrapper = Callable[[list[RemoteSource], PieceManifest | None], list[Source]]


@dataclass
class ResolvedModel:
    """A manifest, one open source per manifest file (same order), raw header bytes
    (prefix included) of each file, and the piece manifest if one was published.
    ``index`` serves the index file's bytes exactly as read (and verified) while
    resolving, under its file name. Close when done (``on_close`` runs then)."""

    manifest: Manifest
    sources: list[Source]
    headers: list[bytes]
    pieces: PieceManifest | None = None
    remote: bool = False
    index: MemorySource | None = None
    on_close: list[Callable[[], None]] = field(default_factory=list)
    # Set when the sources check every piece themselves (the node cache): the loader
    # then only plans reads on ``piece_size`` boundaries, and reports ``counters()``.
    # ``published``: they check against the origin's manifest (not only at-rest sums).
    checked_piece_size: int | None = None
    published: bool = False
    counters: Callable[[], dict[str, int]] | None = None

    def close(self) -> None:
        for source in [*self.sources, *([self.index] if self.index else [])]:
            source.close()
        for callback in self.on_close:
            callback()
        self.on_close.clear()

    def __enter__(self) -> ResolvedModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def resolve(source: str | os.PathLike[str]) -> ResolvedModel:
    """Resolve a ``.safetensors`` file, a sharded index, or a directory holding either."""
    if is_remote(source):
        return resolve_remote(str(source))
    path = Path(source)
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
        return ResolvedModel(manifest, list(sources), raw, pieces, remote, index_source)
    except BaseException:
        for src in sources:
            src.close()
        raise


def read_header(source: Source) -> SafetensorsHeader:
    """Fetch and validate a source's header: the prefix first, so its length is bounded."""
    return _fetch_header(source)[1]


def _fetch_header(source: Source) -> tuple[bytes, SafetensorsHeader]:
    """One read of the first bytes usually holds the whole header: one round trip, not two."""
    size = source.size()
    first = bytearray(min(size, _SPECULATIVE_HEADER_BYTES))
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


def resolve_remote(uri: str, *, wrap: ShardWrapper | None = None) -> ResolvedModel:
    """Resolve a remote URI; ``wrap`` may put each shard's source behind something (a cache)."""
    directory, name = RemoteDirectory.split(uri)
    with ThreadPoolExecutor(2) as pool:  # two round trips at once
        manifest_fetch = pool.submit(directory.piece_manifest)
        if not name:
            name = pick_model_file(directory.list_names(), where=directory.uri)
        index_fetch = pool.submit(directory.read, name) if name.endswith(".index.json") else None
        pieces = manifest_fetch.result()
        data = index_fetch.result() if index_fetch else b""
    if name.endswith(".index.json"):
        if pieces is not None and name in {f.name for f in pieces.files}:
            _check_small_file(pieces, name, data, where=directory.uri + name)
        index = parse_index(data, name=directory.uri + name)
        shards = [directory.source(shard) for shard in index.shards]
        return resolve_sources(
            wrap(shards, pieces) if wrap else shards,
            index,
            pieces=pieces,
            remote=True,
            index_source=MemorySource(name, data),
        )
    shards = [directory.source(name)]
    return resolve_sources(wrap(shards, pieces) if wrap else shards, pieces=pieces, remote=True)


def _check_small_file(pieces: PieceManifest, name: str, data: bytes, *, where: str) -> None:
    """Verify a whole small file (the index) against its digest before parsing it."""
    hasher = PieceHasher(pieces.piece_size, pieces.algorithm)
    hasher.update(data)
    if not hasher.finish(name).same_bytes(pieces.file(name)):
        raise IntegrityError(f"{where}: does not match its digest in {MANIFEST_NAME}")


def pick_model_file(names: Sequence[str], *, where: str) -> str:
    """Which file of a directory (or object prefix) is the model: its index, or its one shard."""
    if DEFAULT_INDEX_NAME in names:
        return DEFAULT_INDEX_NAME
    indexes = sorted(n for n in names if n.endswith(INDEX_SUFFIX))
    if len(indexes) == 1:
        return indexes[0]
    if len(indexes) > 1:
        raise PagefaultError(
            f"{where}: several indexes ({', '.join(indexes)}); pass the one to load"
        )
    files = sorted(n for n in names if n.endswith(".safetensors"))
    if len(files) == 1:
        return files[0]
    if not files:
        raise NotFound(f"{where}: no .safetensors file or {DEFAULT_INDEX_NAME} there")
    raise PagefaultError(
        f"{where}: {len(files)} .safetensors files and no index; "
        f"pass one file or add {DEFAULT_INDEX_NAME}"
    )


def file_name(name: str) -> str:
    """The last path component of a path or URI: a manifest names files, not locations."""
    return name.rstrip("/").rsplit("/", 1)[-1]


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
