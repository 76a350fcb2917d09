"""Arenas handed back for reuse, so a model swap loads into memory already faulted.

A private load into fresh memory pays the kernel's zeroing (and on a VM the host's
backing) of every page: 3-4 GB/s on the development VM where a read into faulted
memory reaches 9-15 GB/s. A long-running server that replaces one model by another
calls ``recycle(old_tensors)`` and drops them; the next arena of at most that size then
takes the old mapping instead of fresh pages. A mapping is reused only once nothing
else holds it: a tensor (or a view of one) still alive keeps it out of reuse, so reuse
never overwrites memory anyone can still read.
"""

from __future__ import annotations

import mmap
import sys
import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["KEEP", "KeptMapping", "recycle", "release_recycled", "take_recycled", "track"]

KEEP = 2  # mappings kept for reuse at most (the oldest beyond are unmapped)


@dataclass
class KeptMapping:
    """One arena's mapping and what backs it."""

    mapping: mmap.mmap
    base: int  # offset of the arena's first byte (2 MiB aligned)
    capacity: int  # usable bytes from ``base``
    huge_pages: bool
    pooled: bool


_lock = threading.Lock()
_live: dict[int, tuple[weakref.ref[mmap.mmap], int, int, bool, bool]] = {}  # by address
_free: list[KeptMapping] = []


def track(mapping: mmap.mmap, address: int, base: int, huge_pages: bool, pooled: bool) -> None:
    """Remember a new arena so that ``recycle`` can find it from its tensors."""
    with _lock:
        _live[address] = (weakref.ref(mapping), base, len(mapping) - base, huge_pages, pooled)
        for stale in [a for a, (ref, *_rest) in _live.items() if ref() is None]:
            del _live[stale]


def recycle(tensors: Mapping[str, torch.Tensor] | Iterable[torch.Tensor] | torch.nn.Module) -> int:
    """Hand back the arenas behind ``tensors`` (a loaded dict, tensors, or a module);
    the bytes of memory handed back. Reuse waits until the caller drops every tensor."""
    found = {id(m.mapping): m for m in (_owner(t) for t in _tensors(tensors)) if m}
    with _lock:
        known = {id(m.mapping) for m in _free}
        _free.extend(m for key, m in found.items() if key not in known)
        del _free[: max(0, len(_free) - KEEP)]
    return sum(m.capacity for m in found.values())


def take_recycled(size: int) -> KeptMapping | None:
    """The smallest handed-back mapping of at least ``size`` bytes nobody holds now."""
    with _lock:
        fitting = [m for m in _free if m.capacity >= size and _unused(m)]
        if not fitting:
            return None
        chosen = min(fitting, key=lambda m: m.capacity)
        _free.remove(chosen)
        return chosen


def release_recycled() -> None:
    """Unmap every handed-back mapping not yet reused (give the memory to the system)."""
    with _lock:
        _free.clear()


def _unused(entry: KeptMapping) -> bool:
    """Only ``_free`` (and this check) hold the mapping: no tensor views it any more."""
    return sys.getrefcount(entry.mapping) <= _BASELINE


def _owner(tensor: torch.Tensor) -> KeptMapping | None:
    if tensor.device.type != "cpu" or tensor.numel() == 0:
        return None
    pointer = tensor.data_ptr()
    with _lock:
        for address, (ref, base, capacity, huge, pooled) in _live.items():
            mapping = ref()
            if mapping is not None and address <= pointer < address + base + capacity:
                return KeptMapping(mapping, base, capacity, huge, pooled)
    return None


def _tensors(value: Any) -> Iterable[torch.Tensor]:
    if isinstance(value, torch.nn.Module):
        return [*value.parameters(), *value.buffers()]
    if isinstance(value, Mapping):
        return list(value.values())
    return list(value)


def _baseline() -> int:
    """References to a mapping held only by a ``KeptMapping`` entry, as ``_unused`` sees it."""
    probe = KeptMapping(mmap.mmap(-1, mmap.PAGESIZE), 0, mmap.PAGESIZE, False, False)
    count = sys.getrefcount(probe.mapping)  # the entry and the call's argument
    probe.mapping.close()
    return count


_BASELINE = _baseline()
