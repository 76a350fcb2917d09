"""Turn what the user passed (file, index, directory) into a manifest and its sources."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pagefault.errors import NotFound, PagefaultError
from pagefault.formats import (
    HEADER_PREFIX_BYTES,
    INDEX_SUFFIX,
    SafetensorsHeader,
    ShardedIndex,
    parse_header,
    parse_header_length,
    parse_index,
)
from pagefault.manifest import Manifest, build_manifest
from pagefault.sources.base import Source
from pagefault.sources.local import LocalFileSource

__all__ = ["ResolvedModel", "read_header", "resolve", "resolve_sources"]

DEFAULT_INDEX_NAME = "model" + INDEX_SUFFIX


@dataclass
class ResolvedModel:
    """A manifest and one open source per manifest file (same order). Close when done."""

    manifest: Manifest
    sources: list[Source]

    def close(self) -> None:
        for source in self.sources:
            source.close()

    def __enter__(self) -> ResolvedModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def resolve(source: str | os.PathLike[str]) -> ResolvedModel:
    """Resolve a ``.safetensors`` file, a sharded index, or a directory holding either."""
    path = Path(source)
    if not path.exists():
        raise NotFound(f"{path}: no such file or directory")
    if path.is_dir():
        path = _pick_in_directory(path)
    if path.name.endswith(".index.json"):
        index = _read_index(path)
        shards = [LocalFileSource(path.parent / shard) for shard in index.shards]
        return resolve_sources(shards, index)
    return resolve_sources([LocalFileSource(path)])


def resolve_sources(sources: Sequence[Source], index: ShardedIndex | None = None) -> ResolvedModel:
    """Read each source's header and build the manifest; closes the sources on failure.

    With an index, ``sources`` must be in ``index.shards`` order.
    """
    try:
        names = index.shards if index is not None else [_file_name(s.name) for s in sources]
        headers = [(name, read_header(src)) for name, src in zip(names, sources, strict=True)]
        return ResolvedModel(build_manifest(headers, index), list(sources))
    except BaseException:
        for src in sources:
            src.close()
        raise


def read_header(source: Source) -> SafetensorsHeader:
    """Fetch and validate a source's header: the prefix first, so its length is bounded."""
    size = source.size()
    prefix = bytearray(min(HEADER_PREFIX_BYTES, size))
    source.read_into(0, [memoryview(prefix)])
    length = parse_header_length(bytes(prefix), file_size=size, name=source.name)
    header = bytearray(length)
    source.read_into(HEADER_PREFIX_BYTES, [memoryview(header)])
    return parse_header(bytes(header), file_size=size, name=source.name)


def _file_name(name: str) -> str:
    """The last path component of a path or URI: a manifest names files, not locations."""
    return name.rstrip("/").rsplit("/", 1)[-1]


def _pick_in_directory(directory: Path) -> Path:
    default = directory / DEFAULT_INDEX_NAME
    if default.is_file():
        return default
    indexes = sorted(directory.glob("*" + INDEX_SUFFIX))
    if len(indexes) == 1:
        return indexes[0]
    if len(indexes) > 1:
        names = ", ".join(p.name for p in indexes)
        raise PagefaultError(f"{directory}: several indexes ({names}); pass the one to load")
    files = sorted(directory.glob("*.safetensors"))
    if len(files) == 1:
        return files[0]
    if not files:
        raise NotFound(f"{directory}: no .safetensors file or {DEFAULT_INDEX_NAME} in directory")
    raise PagefaultError(
        f"{directory}: {len(files)} .safetensors files and no index; "
        f"pass one file or add {DEFAULT_INDEX_NAME}"
    )


def _read_index(path: Path) -> ShardedIndex:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NotFound(f"{path}: cannot read index: {exc.strerror}") from exc
    index = parse_index(data, name=str(path))
    missing = [shard for shard in index.shards if not (path.parent / shard).is_file()]
    if missing:
        raise NotFound(f"{path}: shards listed in the index are missing: {', '.join(missing)}")
    return index
