"""The identity of a model: its files and tensor table, with absolute byte ranges.

Built from already-parsed headers, so this layer does no I/O. Later layers (verified
pieces, the cache, the swarm) key everything on ``Manifest.model_id``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pagefault.errors import FormatError
from pagefault.formats import DType, SafetensorsHeader, ShardedIndex

__all__ = ["FileEntry", "Manifest", "TensorEntry", "build_manifest"]


@dataclass(frozen=True)
class FileEntry:
    """One safetensors file of a model."""

    name: str
    size: int
    data_offset: int
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TensorEntry:
    """One tensor; ``start``/``end`` are absolute byte offsets within file ``file_index``."""

    name: str
    dtype: DType
    shape: tuple[int, ...]
    file_index: int
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Manifest:
    """Files and tensors of a model, tensors in consumption (file, then offset) order."""

    files: tuple[FileEntry, ...]
    tensors: tuple[TensorEntry, ...]

    @property
    def total_bytes(self) -> int:
        """Bytes of tensor data (headers excluded)."""
        return sum(t.nbytes for t in self.tensors)

    @property
    def model_id(self) -> str:
        """SHA-256 of the canonical tensor table: same layout, same id."""
        table: list[list[object]] = [[f.name, f.size] for f in self.files]
        for t in self.tensors:
            table[t.file_index].append([t.name, t.dtype.value, list(t.shape), t.start, t.end])
        return hashlib.sha256(json.dumps(table, separators=(",", ":")).encode()).hexdigest()

    def tensor(self, name: str) -> TensorEntry:
        for entry in self.tensors:
            if entry.name == name:
                return entry
        raise KeyError(name)


def build_manifest(
    headers: Sequence[tuple[str, SafetensorsHeader]], index: ShardedIndex | None = None
) -> Manifest:
    """Combine parsed shard headers (in load order) into one manifest, checking the index."""
    files: list[FileEntry] = []
    tensors: list[TensorEntry] = []
    owner: dict[str, str] = {}
    for file_index, (name, header) in enumerate(headers):
        files.append(FileEntry(name, header.file_size, header.data_offset, header.metadata))
        for info in header.tensors:
            if info.name in owner:
                raise FormatError(
                    f"{name}: tensor {info.name!r} is also in {owner[info.name]}; "
                    "names must be unique"
                )
            owner[info.name] = name
            base = header.data_offset
            tensors.append(
                TensorEntry(
                    info.name,
                    info.dtype,
                    info.shape,
                    file_index,
                    base + info.start,
                    base + info.end,
                )
            )
    if index is not None:
        _check_index(index, owner)
    return Manifest(files=tuple(files), tensors=tuple(tensors))


def _check_index(index: ShardedIndex, owner: Mapping[str, str]) -> None:
    for tensor, shard in index.weight_map.items():
        found = owner.get(tensor)
        if found != shard:
            where = f"found in {found}" if found else "not found in any shard"
            raise FormatError(f"index maps tensor {tensor!r} to {shard}, but it is {where}")
