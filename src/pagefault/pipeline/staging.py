"""A bounded ring of staging buffers: the only host memory a staged load uses.

For CUDA the buffers are pinned and each carries an event recorded after the
host→device copies that read it; a buffer is reused only after its event completes,
so reads into buffer k+1 overlap the copy out of buffer k and peak host memory is
``slots × slot_bytes`` whatever the model size.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field

import torch

from pagefault.tensors.memory import tensor_bytes

__all__ = ["StagingRing", "StagingSlot"]


@dataclass
class StagingSlot:
    """One staging buffer and, for CUDA, the event guarding its reuse."""

    buffer: torch.Tensor
    view: memoryview
    event: torch.cuda.Event | None = None
    pending: bool = field(default=False)


class StagingRing:
    """``slots`` buffers of ``slot_bytes``; ``acquire`` blocks until one is free."""

    def __init__(self, *, slots: int, slot_bytes: int, pinned: bool) -> None:
        self.slot_bytes = slot_bytes
        self._free: queue.SimpleQueue[StagingSlot] = queue.SimpleQueue()
        for _ in range(slots):
            buffer = torch.empty(slot_bytes, dtype=torch.uint8, pin_memory=pinned)
            event = torch.cuda.Event() if pinned else None  # type: ignore[no-untyped-call]
            self._free.put(StagingSlot(buffer, tensor_bytes(buffer), event))

    def acquire(self) -> tuple[StagingSlot, float]:
        """Take a free slot whose previous copies have finished; also return seconds waited."""
        started = time.perf_counter()
        slot = self._free.get()
        if slot.event is not None and slot.pending:
            slot.event.synchronize()
            slot.pending = False
        return slot, time.perf_counter() - started

    def release(self, slot: StagingSlot, stream: torch.cuda.Stream | None = None) -> None:
        """Return a slot; with ``stream``, mark it busy until the work queued there is done."""
        if slot.event is not None and stream is not None:
            slot.event.record(stream)
            slot.pending = True
        self._free.put(slot)
