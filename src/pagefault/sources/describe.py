"""What a remote model *is*, in one downward pass: a frozen description, no open sources.

``describe(uri)`` asks the origin once (a listing or a probe, the index and the piece
manifest at once, then one HEAD per shard at once) and returns a
:class:`ModelDescription`: the files with the size, ETag and version that pin them, the
index bytes (verified against the piece manifest when one is published), and the piece
manifest. It knows nothing of caches or peers: whoever opens the model decides which
links (RAM tier, disk tier, swarm, origin) each file is read through.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from pagefault.errors import FormatError, IntegrityError, NotFound
from pagefault.formats import INDEX_SUFFIX, ShardedIndex, parse_index
from pagefault.manifest import MANIFEST_NAME, PieceHasher, PieceManifest
from pagefault.sources.remote import RemoteSource
from pagefault.sources.remote_dir import RemoteDirectory

if TYPE_CHECKING:
    from obstore import ObjectMeta

__all__ = ["ModelDescription", "RemoteFile", "describe", "file_name", "pick_model_file"]

_HEADS = 16  # shard HEADs in flight at once: remote round trips dominate
DEFAULT_INDEX_NAME = "model" + INDEX_SUFFIX


@dataclass(frozen=True)
class RemoteFile:
    """One version of one origin file: reads are pinned to this ETag and version."""

    name: str
    size: int
    etag: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class ModelDescription:
    """A remote model as the origin served it when described.

    ``directory`` is the prefix URI (ends with ``/``); ``entry`` the file the URI resolved
    to (the index, or the one shard); ``files`` the shards in index order; ``index`` the
    index file's bytes (None for a single file); ``pieces`` the published piece manifest.
    """

    uri: str
    directory: str
    entry: str
    files: tuple[RemoteFile, ...]
    index: bytes | None = None
    pieces: PieceManifest | None = None

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def parsed_index(self) -> ShardedIndex | None:
        return None if self.index is None else parse_index(self.index, name=self.where(self.entry))

    def where(self, name: str) -> str:
        """The URI of one of the model's files, for messages."""
        return self.directory + name

    def origins(self) -> list[RemoteSource]:
        """An origin source per file, pinned to the described version (no second HEAD),
        all on one store: the model's files share its connection pool."""
        directory, _ = RemoteDirectory.split(self.directory)
        return [directory.source(f.name, meta=pinned_meta(f)) for f in self.files]


def describe(uri: str) -> ModelDescription:
    """Describe the remote model at ``uri`` (a file, an index, or a prefix holding one)."""
    directory, name = RemoteDirectory.split(uri)
    with ThreadPoolExecutor(2) as pool:  # two round trips at once
        manifest_fetch = pool.submit(directory.piece_manifest)
        if not name:
            name = pick_model_file(directory.list_names(), where=directory.uri)
        index_fetch = pool.submit(directory.read, name) if name.endswith(".index.json") else None
        pieces = manifest_fetch.result()
        index = index_fetch.result() if index_fetch else None
    if index is None:
        shard_names: Sequence[str] = [name]
    else:
        if pieces is not None and name in {f.name for f in pieces.files}:
            check_small_file(pieces, name, index, where=directory.uri + name)
        shard_names = parse_index(index, name=directory.uri + name).shards
    files = identify([directory.source(shard) for shard in shard_names])
    return ModelDescription(uri, directory.uri, name, tuple(files), index, pieces)


def identify(shards: Sequence[RemoteSource]) -> list[RemoteFile]:
    """HEAD every shard at once; each file is pinned by its size, ETag and version."""
    with ThreadPoolExecutor(max(1, min(_HEADS, len(shards)))) as pool:
        metas = list(pool.map(lambda shard: shard.meta, shards))
    return [
        RemoteFile(file_name(shard.name), int(meta["size"]), meta["e_tag"], meta["version"])
        for shard, meta in zip(shards, metas, strict=True)
    ]


def pinned_meta(file: RemoteFile) -> ObjectMeta:
    """Pin reads to a described version: a changed origin fails instead of mixing."""
    return {
        "path": file.name,
        "last_modified": datetime.now(timezone.utc),
        "size": file.size,
        "e_tag": file.etag,
        "version": file.version,
    }


def check_small_file(pieces: PieceManifest, name: str, data: bytes, *, where: str) -> None:
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
        raise FormatError(f"{where}: several indexes ({', '.join(indexes)}); pass the one to load")
    files = sorted(n for n in names if n.endswith(".safetensors"))
    if len(files) == 1:
        return files[0]
    if not files:
        raise NotFound(f"{where}: no .safetensors file or {DEFAULT_INDEX_NAME} there")
    raise FormatError(
        f"{where}: {len(files)} .safetensors files and no index; "
        f"pass one file or add {DEFAULT_INDEX_NAME}"
    )


def file_name(name: str) -> str:
    """The last path component of a path or URI: a manifest names files, not locations."""
    return name.rstrip("/").rsplit("/", 1)[-1]
