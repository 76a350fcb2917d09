"""Host memory for tensors: one huge-page arena per load, and views into it.

Faulting fresh 4 KiB pages costs more than reading the bytes, so the private arena is
one 2 MiB-aligned anonymous mapping with ``MADV_HUGEPAGE`` (one fault and one clear per
2 MiB), allocated once per load. On a VM whose balloon reports free pages to the host
that is not always the faster choice: how fast fresh memory faults in depends on what
freed it and when (4 GiB: huge pages 0.5-0.7 s right after ``drop_caches``, 2.4-4.4 s
after another process's memory or an idle spell; 4 KiB pages 1.0-2.8 s throughout;
docs/benchmarks.md). ``PAGEFAULT_HUGE_PAGES=0`` turns the advice off.
Tensors are ``torch.frombuffer`` views that hold a reference to the mapping: the
memory lives exactly as long as the last tensor that views it.
"""

from __future__ import annotations

import math
import mmap
import os

import torch

from pagefault.errors import SinkError
from pagefault.sources.mapping import (
    MADV_HUGEPAGE,
    buffer_address,
    madvise,
)
from pagefault.switches import parse_switch

__all__ = ["HUGE_PAGE", "Arena", "huge_pages_wanted", "madvise", "tensor_from_buffer"]

HUGE_PAGE = 2 * 1024 * 1024
HUGE_PAGES_ENV = "PAGEFAULT_HUGE_PAGES"


def huge_pages_wanted() -> bool:
    """Whether the arena asks for huge pages: yes unless ``PAGEFAULT_HUGE_PAGES`` says off."""
    try:
        return parse_switch(os.environ.get(HUGE_PAGES_ENV, "1"))
    except ValueError as exc:
        raise SinkError(f"{HUGE_PAGES_ENV}: {exc}") from None


class Arena:
    """One private anonymous mapping, 2 MiB aligned and (by default) huge-page advised."""

    def __init__(self, size: int) -> None:
        self.size = size
        try:
            self._map = mmap.mmap(
                -1, max(size, 1) + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
            )
        except (OSError, OverflowError) as exc:
            raise SinkError(f"cannot allocate a {size}-byte CPU arena: {exc}") from exc
        address = buffer_address(self._map)
        self._base = -address % HUGE_PAGE
        self.huge_pages = huge_pages_wanted() and madvise(address + self._base, size, MADV_HUGEPAGE)

    def view(self, offset: int, length: int) -> memoryview:
        start = self._base + offset
        return memoryview(self._map)[start : start + length]

    def tensor(self, offset: int, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        return tensor_from_buffer(self._map, self._base + offset, dtype, shape)


def tensor_from_buffer(
    buf: mmap.mmap, offset: int, dtype: torch.dtype, shape: tuple[int, ...]
) -> torch.Tensor:
    """A tensor viewing ``buf`` at ``offset``; the tensor keeps ``buf`` alive."""
    numel = math.prod(shape)
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(buf, dtype=dtype, count=numel, offset=offset).view(shape)
