"""Host memory for tensors: one huge-page arena per load, and views into it.

Faulting fresh 4 KiB pages costs more than reading the bytes, so the arena is huge
pages: the node's reserved pool (``MAP_HUGETLB``) when it has room for all of it, else
one 2 MiB-aligned anonymous mapping advised ``MADV_HUGEPAGE`` (one fault and one clear
per 2 MiB). On a VM whose balloon reports free pages to the host, the second kind also
costs a host fault unless another process freed it moments before (4 GiB: 0.44 s right
after, 3-5 s after an idle spell); reserved pages never go back to the host, so a load
into them runs at the read limit (``pipeline/hugetlb.py``, docs/benchmarks.md).
``PAGEFAULT_HUGETLB=0`` skips the pool; ``PAGEFAULT_HUGE_PAGES=0`` skips both.
Tensors are ``torch.frombuffer`` views that hold a reference to the mapping: the
memory lives exactly as long as the last tensor that views it.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import os

import torch

from pagefault.errors import SinkError
from pagefault.system.anonymous import HUGE_PAGE, aligned_mapping, pool_mapping
from pagefault.system.mapping import buffer_address, madvise
from pagefault.system.switches import parse_switch
from pagefault.tensors.recycle import take_recycled, track

__all__ = [
    "HUGE_PAGE",
    "HUGE_PAGES_ENV",
    "Arena",
    "empty_tensor",
    "huge_pages_wanted",
    "madvise",
    "pool_wanted",
    "tensor_bytes",
    "tensor_from_buffer",
]

HUGE_PAGES_ENV = "PAGEFAULT_HUGE_PAGES"
HUGETLB_ENV = "PAGEFAULT_HUGETLB"


def huge_pages_wanted() -> bool:
    """Whether the arena asks for huge pages: yes unless ``PAGEFAULT_HUGE_PAGES`` says off."""
    return _switch(HUGE_PAGES_ENV)


def pool_wanted() -> bool:
    """Whether the arena may take reserved huge pages: unless either switch says off."""
    return huge_pages_wanted() and _switch(HUGETLB_ENV)


def _switch(name: str) -> bool:
    try:
        return parse_switch(os.environ.get(name, "1"))
    except ValueError as exc:
        raise SinkError(f"{name}: {exc}") from None


class Arena:
    """One private mapping of huge pages (reserved, or advised) for ``size`` bytes."""

    def __init__(self, size: int, pages: str | None = None) -> None:
        """The reserved pool when it has room (an administrator set it aside for this);
        else ``pages``, the kind a caller measured faster (``huge-pages`` or
        ``small-pages``; None: huge pages). The ``PAGEFAULT_*`` switches veto either."""
        self.size = size
        kept = take_recycled(size) if size else None
        self.reused = kept is not None
        if kept is not None:  # memory a previous model faulted: no page faults this time
            self._map, self._base = kept.mapping, kept.base
            self.huge_pages, self.pooled = kept.huge_pages, kept.pooled
            return
        pooled = pool_mapping(size) if pool_wanted() else None
        self.pooled = pooled is not None
        if pooled is not None:
            self._map, self._base, self.huge_pages = pooled, 0, True
        else:
            huge = huge_pages_wanted() and pages != "small-pages"
            self._map, self._base, self.huge_pages = _advised_mapping(size, huge)
        address = buffer_address(self._map)
        track(self._map, address, self._base, self.huge_pages, self.pooled)

    @property
    def pages(self) -> str:
        """What backs the arena: ``reused`` (memory handed back by ``recycle``),
        ``hugetlb-pool``, ``huge-pages`` (advised) or ``small-pages``."""
        if self.reused:
            return "reused"
        return "hugetlb-pool" if self.pooled else "huge-pages" if self.huge_pages else "small-pages"

    def view(self, offset: int, length: int) -> memoryview:
        start = self._base + offset
        return memoryview(self._map)[start : start + length]

    def tensor(self, offset: int, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        return tensor_from_buffer(self._map, self._base + offset, dtype, shape)


def _advised_mapping(size: int, huge: bool) -> tuple[mmap.mmap, int, bool]:
    try:
        return aligned_mapping(size, huge)
    except (OSError, OverflowError) as exc:
        raise SinkError(f"cannot allocate a {size}-byte CPU arena: {exc}") from exc


def tensor_from_buffer(
    buf: mmap.mmap, offset: int, dtype: torch.dtype, shape: tuple[int, ...]
) -> torch.Tensor:
    """A tensor viewing ``buf`` at ``offset``; the tensor keeps ``buf`` alive."""
    numel = math.prod(shape)
    if numel == 0:
        return empty_tensor(shape, dtype)
    return torch.frombuffer(buf, dtype=dtype, count=numel, offset=offset).view(shape)


def empty_tensor(
    shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """A tensor of ``shape`` (any shape, zero elements or not) without reading memory.

    ``torch.empty`` computes contiguous strides and overflows on a shape such as
    ``[0, 2**32, 2**32]``, which safetensors accepts; reshaping an empty tensor does not.
    """
    if math.prod(shape) == 0:
        return torch.empty(0, dtype=dtype, device=device).reshape(shape)
    return torch.empty(shape, dtype=dtype, device=device)


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """A writable byte view of a contiguous CPU tensor's memory (kept alive by the caller)."""
    size = tensor.numel() * tensor.element_size()
    array = (ctypes.c_ubyte * size).from_address(tensor.data_ptr())
    return memoryview(array).cast("B")
