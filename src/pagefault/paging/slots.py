"""Slot memory: one allocation, carved into equal slots, reused for every group that passes.

On CPU it is one arena of the page kind this node fills fastest, populated once when it
is made, so after that no forward faults a fresh page. On CUDA it is one device tensor.
"""

from __future__ import annotations

import torch

from pagefault.doctor.page_kind import fastest_pages
from pagefault.system.mapping import populate_write
from pagefault.tensors.memory import Arena

from .groups import PageGroup

__all__ = ["SlotPool"]


class SlotPool:
    """``count`` slots of ``slot_bytes`` (a multiple of 64: every view is aligned) on ``device``."""

    def __init__(self, *, count: int, slot_bytes: int, device: torch.device) -> None:
        self.slot_bytes = slot_bytes
        total = self.slot_bytes * count
        if device.type == "cpu":
            arena = Arena(total, fastest_pages())
            populate_write(arena.view(0, total))
            self.pages = arena.pages
            self._flat = arena.tensor(0, torch.uint8, (total,))
        else:
            self.pages = "device"
            self._flat = torch.empty(total, dtype=torch.uint8, device=device)

    def views(self, slot: int, group: PageGroup) -> dict[str, torch.Tensor]:
        """Each of ``group``'s tensors, typed and shaped, at its offset in ``slot``."""
        base = slot * self.slot_bytes
        views = {}
        for t in group.tensors:
            start = base + t.offset
            raw = self._flat[start : start + t.nbytes]
            views[t.name] = raw.view(t.dtype).view(t.shape)
        return views
