"""Parse Hugging Face sharded indexes (``model.safetensors.index.json``), from bytes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pagefault.errors import FormatError

__all__ = [
    "INDEX_SUFFIX",
    "MAX_INDEX_BYTES",
    "ShardedIndex",
    "parse_index",
    "parse_json_bytes",
    "validate_relative_path",
    "validate_shard_name",
]

INDEX_SUFFIX = ".safetensors.index.json"
MAX_INDEX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ShardedIndex:
    """Which shard holds each tensor; ``shards`` keeps first-appearance order."""

    weight_map: Mapping[str, str]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def shards(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.weight_map.values()))


def parse_json_bytes(data: bytes, *, name: str, limit: int) -> Any:
    """Decode a small JSON document from untrusted bytes, bounded, errors as FormatError."""
    if len(data) > limit:
        raise FormatError(f"{name}: {len(data)} bytes, over the {limit} limit")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise FormatError(f"{name}: not valid JSON: {exc}") from exc


def parse_index(data: bytes, *, name: str) -> ShardedIndex:
    """Validate an index file's bytes; shard names must be plain file names."""
    raw = parse_json_bytes(data, name=name, limit=MAX_INDEX_BYTES)
    if not isinstance(raw, dict) or not isinstance(raw.get("weight_map"), dict):
        raise FormatError(f"{name}: index must be a JSON object with a 'weight_map' object")
    weight_map = raw["weight_map"]
    if not weight_map:
        raise FormatError(f"{name}: weight_map is empty")
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str):
            raise FormatError(f"{name}: weight_map[{tensor!r}] must be a file name string")
        validate_shard_name(shard, where=f"{name}: weight_map[{tensor!r}]")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise FormatError(f"{name}: 'metadata' must be an object")
    return ShardedIndex(weight_map=dict(weight_map), metadata=metadata)


def validate_shard_name(
    shard: str, *, where: str, suffixes: tuple[str, ...] = (".safetensors",)
) -> None:
    """Reject names that could escape the model's directory (``..``, absolute, separators)."""
    bad = (
        not shard
        or shard in {".", ".."}
        or "/" in shard
        or "\\" in shard
        or "\x00" in shard
        or not shard.endswith(suffixes)
    )
    if bad:
        wanted = " or ".join(f"'*{suffix}'" for suffix in suffixes)
        raise FormatError(f"{where}: {shard!r} is not a plain {wanted} file name")


def validate_relative_path(path: str, *, where: str) -> None:
    """Reject a ``/``-separated relative path unless every component is a plain name."""
    for part in path.split("/"):
        validate_shard_name(part, where=where, suffixes=("",))
