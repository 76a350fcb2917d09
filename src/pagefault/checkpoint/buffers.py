"""Host staging buffers for snapshots, reused across saves under a memory budget.

Faulting fresh pages in costs more than copying into them (about 3 GB/s on the
development VM against ~10 GB/s for a copy into resident memory), so a snapshot is
only as cheap as memcpy when its buffer is already resident: the pool keeps buffers
after a save finishes persisting and hands them to the next save.

Policy (``StagingPool.acquire``), for a snapshot of ``n`` bytes under ``budget``:

1. reuse the smallest idle buffer of the right kind that holds ``n`` bytes;
2. else allocate one, if the buffers held (idle and busy) plus ``n`` fit the budget,
   first freeing idle buffers that cannot be reused;
3. else wait until a save still persisting releases its buffer, and try again.

``budget=None`` means one snapshot's worth: saves are serialized, and a save started
while the previous one persists waits for it (the wait is part of the caller's stall
and reported as ``SaveStats.buffer_wait_s``). A budget of twice the state dict lets one
save persist while the next snapshot is taken. A snapshot larger than the budget fails
at once with ``CheckpointError``.

``reserve(n)`` allocates and faults in a buffer ahead of time (say at start-up), so
even the first save's snapshot runs at memcpy speed.

Kinds: a huge-page ``Arena`` for CPU tensors; pinned memory when any tensor is on CUDA
(device→host copies into pageable memory are synchronous and slower).
"""

from __future__ import annotations

import threading
import time

import torch

from pagefault.errors import CheckpointError, SinkError
from pagefault.tensors.memory import Arena, madvise, tensor_bytes

__all__ = ["HostBuffer", "StagingPool", "default_pool", "free_staging_buffers"]

MADV_POPULATE_WRITE = 23  # Linux 5.14+


class HostBuffer:
    """``capacity`` bytes of host memory, viewable as bytes and as a uint8 tensor."""

    def __init__(self, capacity: int, *, pinned: bool) -> None:
        self.capacity = capacity
        self.pinned = pinned
        try:
            if pinned:
                self.tensor = torch.empty(capacity, dtype=torch.uint8, pin_memory=True)
            else:
                self.tensor = Arena(capacity).tensor(0, torch.uint8, (capacity,))
        except (RuntimeError, SinkError) as exc:
            kind = "pinned" if pinned else "huge-page"
            raise CheckpointError(
                f"cannot allocate a {capacity}-byte {kind} staging buffer: {exc}"
            ) from exc
        self._bytes = tensor_bytes(self.tensor)

    def populate(self) -> None:
        """Fault every page in (zero-filled) ahead of the first copy."""
        if not madvise(self.tensor.data_ptr(), self.capacity, MADV_POPULATE_WRITE):
            self.tensor.zero_()  # kernels before 5.14: touch the pages ourselves

    def view(self, offset: int, length: int) -> memoryview:
        """Bytes ``[offset, offset + length)`` (valid while this buffer is referenced)."""
        return self._bytes[offset : offset + length]

    def region(self, offset: int, length: int) -> torch.Tensor:
        """The same bytes as a uint8 tensor, for torch copies."""
        return self.tensor[offset : offset + length]


class StagingPool:
    """Buffers kept between saves; see the module docstring for the policy."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._idle: list[HostBuffer] = []
        self._held = 0  # capacity of idle and busy buffers together
        self._waiting = 0

    @property
    def held_bytes(self) -> int:
        with self._cond:
            return self._held

    @property
    def waiting(self) -> int:
        """Saves blocked until a buffer is released."""
        with self._cond:
            return self._waiting

    def acquire(
        self, nbytes: int, *, pinned: bool, budget: int | None = None
    ) -> tuple[HostBuffer, float]:
        """A buffer of at least ``nbytes``; also the seconds spent waiting for one."""
        limit = nbytes if budget is None else budget
        if nbytes > limit:
            raise CheckpointError(
                f"snapshot needs {nbytes} bytes of staging memory but staging_budget is "
                f"{limit}; raise staging_budget to at least {nbytes}"
            )
        started = time.perf_counter()
        with self._cond:
            while True:
                reused = self._take_idle(nbytes, pinned)
                if reused is not None:
                    return reused, time.perf_counter() - started
                self._free_idle(nbytes, pinned)
                if self._held + nbytes <= limit:
                    return self._allocate(nbytes, pinned), time.perf_counter() - started
                self._waiting += 1
                try:
                    self._cond.wait()
                finally:
                    self._waiting -= 1

    def reserve(self, nbytes: int, *, pinned: bool = False) -> None:
        """Allocate and fault in an idle buffer now, so the first save's snapshot is a memcpy.

        Call it at start-up with the state dict's size (``SaveHandle.total_bytes`` of an
        earlier save, or the sum of tensor bytes plus a few KiB of headers per shard).
        """
        with self._cond:
            buffer = self._allocate(nbytes, pinned)
        buffer.populate()
        self.release(buffer)

    def release(self, buffer: HostBuffer) -> None:
        """Return a buffer whose save has finished persisting; wake waiting saves."""
        with self._cond:
            self._idle.append(buffer)
            self._cond.notify_all()

    def clear(self) -> int:
        """Free every idle buffer; return the bytes freed."""
        with self._cond:
            freed = sum(b.capacity for b in self._idle)
            self._held -= freed
            self._idle.clear()
            self._cond.notify_all()
            return freed

    def _take_idle(self, nbytes: int, pinned: bool) -> HostBuffer | None:
        fits = [b for b in self._idle if b.pinned == pinned and b.capacity >= nbytes]
        if not fits:
            return None
        best = min(fits, key=lambda b: b.capacity)
        self._idle.remove(best)
        return best

    def _free_idle(self, nbytes: int, pinned: bool) -> None:
        """Drop idle buffers that cannot serve this request, making room for a new one."""
        useless = [b for b in self._idle if b.pinned != pinned or b.capacity < nbytes]
        for buffer in useless:
            self._idle.remove(buffer)
            self._held -= buffer.capacity

    def _allocate(self, nbytes: int, pinned: bool) -> HostBuffer:
        buffer = HostBuffer(nbytes, pinned=pinned)
        self._held += nbytes
        return buffer


_DEFAULT = StagingPool()


def default_pool() -> StagingPool:
    """The process-wide pool ``pagefault.save`` uses."""
    return _DEFAULT


def free_staging_buffers() -> int:
    """Free the idle staging buffers kept for the next save; return the bytes freed."""
    return _DEFAULT.clear()
