"""Plan a checkpoint: shards, each file's exact bytes, the staging layout, the work units.

Pure: no I/O and no torch, so every decision is testable on its own. Shards follow
Hugging Face's layout (``model-00001-of-00003.safetensors`` + ``model.safetensors.index.json``,
greedy split at ``max_shard_size``, a tensor larger than that alone in its shard) and
keep the state dict's order. An index is written even for one shard: it is the file
loaders look for first, and its absence marks an incomplete checkpoint.

In the staging buffer each shard's file (header + data) is one contiguous region, so
persistence writes or uploads straight out of the buffer with no further copy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pagefault.errors import CheckpointError, FormatError
from pagefault.formats import INDEX_SUFFIX, TensorSpec, build_header

__all__ = [
    "BUFFER_ALIGNMENT",
    "DEFAULT_MAX_SHARD_SIZE",
    "INDEX_NAME",
    "SavePlan",
    "ShardPlan",
    "WorkUnit",
    "plan_save",
    "plan_units",
    "shard_name",
]

INDEX_NAME = "model" + INDEX_SUFFIX
DEFAULT_MAX_SHARD_SIZE = 5 * 10**9  # Hugging Face's long-standing "5GB"
BUFFER_ALIGNMENT = 4096  # shard regions start page aligned in the staging buffer
_FORMAT_METADATA = {"format": "pt"}  # Transformers refuses shards without it


@dataclass(frozen=True)
class ShardPlan:
    """One shard file: its tensors, header bytes, and where its bytes sit in the buffer."""

    name: str
    specs: tuple[TensorSpec, ...]
    header: bytes
    nbytes: tuple[int, ...]
    buffer_offset: int

    @property
    def size(self) -> int:
        """Bytes of the whole file, header included."""
        return len(self.header) + sum(self.nbytes)

    def tensor_offsets(self) -> list[int]:
        """File offset of each tensor's first byte (tensors are back to back after the header)."""
        offsets, at = [], len(self.header)
        for n in self.nbytes:
            offsets.append(at)
            at += n
        return offsets


@dataclass(frozen=True)
class SavePlan:
    """Every shard of one checkpoint and the staging buffer size they need."""

    shards: tuple[ShardPlan, ...]
    buffer_bytes: int

    @property
    def tensor_bytes(self) -> int:
        return sum(sum(s.nbytes) for s in self.shards)

    @property
    def file_bytes(self) -> int:
        return sum(s.size for s in self.shards)

    def index_json(self) -> bytes:
        """The Hugging Face index: total tensor bytes and tensor → shard (sorted, like HF)."""
        weight_map = {spec.name: s.name for s in self.shards for spec in s.specs}
        body = {"metadata": {"total_size": self.tensor_bytes}, "weight_map": weight_map}
        return json.dumps(body, indent=2, sort_keys=True).encode() + b"\n"

    def placements(self) -> list[tuple[int, int]]:
        """``(buffer offset, nbytes)`` of every tensor, in state-dict order."""
        return [
            (shard.buffer_offset + offset, n)
            for shard in self.shards
            for offset, n in zip(shard.tensor_offsets(), shard.nbytes, strict=True)
        ]


@dataclass(frozen=True)
class WorkUnit:
    """Bytes ``[start, end)`` of shard ``shard``: one write request and the pieces it covers."""

    shard: int
    start: int
    end: int


def shard_name(number: int, count: int) -> str:
    return f"model-{number:05d}-of-{count:05d}.safetensors"


def plan_save(
    specs: Sequence[TensorSpec],
    *,
    max_shard_size: int = DEFAULT_MAX_SHARD_SIZE,
    metadata: Mapping[str, str] | None = None,
) -> SavePlan:
    """Split ``specs`` (state-dict order) into shards and lay them out in one buffer."""
    if max_shard_size < 1:
        raise CheckpointError(f"max_shard_size must be positive, got {max_shard_size}")
    if not specs:
        raise CheckpointError("nothing to save: the state dict is empty")
    groups = _split(specs, max_shard_size)
    meta = {**_FORMAT_METADATA, **(metadata or {})}
    shards, offset = [], 0
    for number, group in enumerate(groups, start=1):
        try:
            header = build_header(group, meta)
        except FormatError as exc:
            raise CheckpointError(f"cannot save: {exc}") from exc
        shard = ShardPlan(
            shard_name(number, len(groups)), tuple(group), header, _sizes(group), offset
        )
        shards.append(shard)
        offset += shard.size + (-shard.size % BUFFER_ALIGNMENT)
    return SavePlan(tuple(shards), offset)


def plan_units(plan: SavePlan, *, request_size: int, piece_size: int) -> list[WorkUnit]:
    """Cut every shard into requests of whole pieces, interleaving shards so all make progress.

    Requests are a multiple of ``piece_size``, so each unit's piece hashes are
    independent of every other unit's and any thread may take any unit.
    """
    step = max(piece_size, request_size - request_size % piece_size)
    per_shard = [
        [WorkUnit(i, start, min(start + step, s.size)) for start in range(0, s.size, step)]
        for i, s in enumerate(plan.shards)
    ]
    longest = max(len(units) for units in per_shard)
    return [units[k] for k in range(longest) for units in per_shard if k < len(units)]


def _sizes(group: Sequence[TensorSpec]) -> tuple[int, ...]:
    return tuple(_nbytes(spec) for spec in group)


def _nbytes(spec: TensorSpec) -> int:
    size = spec.dtype.nbytes(math.prod(spec.shape))
    if size is None:
        raise CheckpointError(
            f"tensor {spec.name!r}: {spec.shape} x {spec.dtype.value} is not whole bytes"
        )
    return size


def _split(specs: Sequence[TensorSpec], max_shard_size: int) -> list[list[TensorSpec]]:
    """Greedy, like ``huggingface_hub.split_torch_state_dict_into_shards``."""
    groups: list[list[TensorSpec]] = [[]]
    filled = 0
    for spec in specs:
        size = _nbytes(spec)
        if groups[-1] and filled + size > max_shard_size:
            groups.append([])
            filled = 0
        groups[-1].append(spec)
        filled += size
    return groups
