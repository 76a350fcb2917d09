"""Where each tensor's bytes land: straight into final memory, or via a staging buffer.

A destination is *direct* when the final tensor is contiguous CPU memory of the file's
dtype: the read scatters into it and nothing is copied. Anything else (a dtype
conversion, a CUDA tensor) is *staged*: bytes land in a bounded staging buffer and are
then copied (converted, or sent host→device) into the final tensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from pagefault.doctor.page_kind import fastest_pages
from pagefault.manifest import TensorEntry
from pagefault.tensors.dtypes import to_torch_dtype, torch_shape
from pagefault.tensors.memory import Arena, empty_tensor, tensor_bytes

__all__ = [
    "ARENA_ALIGNMENT",
    "FRESH_PAGES",
    "Destination",
    "arena_destinations",
    "device_destinations",
    "existing_destination",
    "packed",
    "shape_of",
    "target_dtype",
]

ARENA_ALIGNMENT = 64  # cache line; also satisfies every dtype's alignment
# arena memory no process has touched yet: populated before each read fills it
# (system.mapping.populate_write); reused and pool pages are populated already or cheap
FRESH_PAGES = frozenset({"small-pages", "huge-pages"})
_CONVERTIBLE = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})


@dataclass(frozen=True)
class Destination:
    """Final home of one tensor; ``direct`` is its writable bytes when no copy is needed."""

    tensor: torch.Tensor
    source_dtype: torch.dtype
    direct: memoryview | None
    fresh: bool = False  # ``direct`` is fresh arena memory: populate it before the read

    @property
    def staged(self) -> bool:
        return self.direct is None


def shape_of(entry: TensorEntry) -> tuple[int, ...]:
    """The torch shape of a checkpoint tensor."""
    return torch_shape(entry.dtype, entry.shape, tensor=entry.name)


def target_dtype(entry: TensorEntry, requested: torch.dtype | None) -> torch.dtype:
    """``requested`` applies to floating-point tensors only; ints, bools and fp8 keep theirs."""
    own = to_torch_dtype(entry.dtype, tensor=entry.name)
    if requested is None or own not in _CONVERTIBLE:
        return own
    return requested


def existing_destination(tensor: torch.Tensor, source_dtype: torch.dtype) -> Destination:
    """Load into an existing tensor, directly when its memory can take the raw bytes."""
    direct_ok = (
        tensor.device.type == "cpu"
        and tensor.dtype == source_dtype
        and tensor.is_contiguous()
        and tensor.numel() > 0
    )
    return Destination(tensor, source_dtype, tensor_bytes(tensor) if direct_ok else None)


def packed(sizes: Iterable[int]) -> tuple[list[int], int]:
    """Offsets for blocks of ``sizes`` bytes laid out back to back, each starting on
    ``ARENA_ALIGNMENT``, and the total they take."""
    offsets: list[int] = []
    total = 0
    for size in sizes:
        offsets.append(total)
        total += size + (-size % ARENA_ALIGNMENT)
    return offsets, total


def arena_destinations(
    entries: Sequence[TensorEntry], dtypes: Sequence[torch.dtype]
) -> tuple[list[Destination], Arena]:
    """Lay tensors out in one huge-page arena, each at a 64-byte aligned offset."""
    shapes = [shape_of(entry) for entry in entries]
    offsets, size = packed(
        math.prod(shape) * dtype.itemsize for shape, dtype in zip(shapes, dtypes, strict=True)
    )
    arena = Arena(size, fastest_pages() if size else None)
    result = []
    for entry, shape, dtype, offset in zip(entries, shapes, dtypes, offsets, strict=True):
        source_dtype = to_torch_dtype(entry.dtype, tensor=entry.name)
        tensor = arena.tensor(offset, dtype, shape)
        direct = (
            arena.view(offset, entry.nbytes) if dtype == source_dtype and entry.nbytes else None
        )
        result.append(Destination(tensor, source_dtype, direct, fresh=arena.pages in FRESH_PAGES))
    return result, arena


def device_destinations(
    entries: Sequence[TensorEntry], dtypes: Sequence[torch.dtype], device: torch.device
) -> list[Destination]:
    """Allocate every tensor on ``device`` up front; all are staged."""
    return [
        Destination(
            empty_tensor(shape_of(entry), dtype, device),
            to_torch_dtype(entry.dtype, tensor=entry.name),
            None,
        )
        for entry, dtype in zip(entries, dtypes, strict=True)
    ]
