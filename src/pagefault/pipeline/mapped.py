"""Tensors that view private (copy-on-write) file mappings: the zero-copy CPU mode.

Writes to these tensors copy the touched page privately and never reach the file.
The mapping stays alive while any tensor views it. A tensor whose file offset is not
a multiple of its item size cannot be viewed safely, so it is copied instead.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence

import torch

from pagefault.manifest import TensorEntry
from pagefault.pipeline.destinations import shape_of
from pagefault.tensors.dtypes import to_torch_dtype
from pagefault.tensors.memory import tensor_from_buffer

__all__ = ["mapped_tensors"]


def mapped_tensors(maps: Sequence[mmap.mmap], entries: Sequence[TensorEntry]) -> list[torch.Tensor]:
    """One lazily-materialized view per entry (views cost nothing until pages are touched)."""
    return [_view(maps[e.file_index], e) for e in entries]


def _view(mapping: mmap.mmap, entry: TensorEntry) -> torch.Tensor:
    dtype = to_torch_dtype(entry.dtype, tensor=entry.name)
    shape = shape_of(entry)
    if entry.start % dtype.itemsize == 0:
        return tensor_from_buffer(mapping, entry.start, dtype, shape)
    raw = tensor_from_buffer(mapping, entry.start, torch.uint8, (entry.nbytes,))
    return raw.clone().view(dtype).view(shape)
