"""What a paged model did: bytes streamed, time forwards waited for them, prefetch depth."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["PagedStats"]


@dataclass
class PagedStats:
    """Counters of one ``PagedModel``; ``stall_s`` has one entry per forward."""

    budget: int | None  # None: the whole model stays (serve while loading)
    resident_bytes: int  # embeddings, head, norms and buffers: never paged
    slot_bytes: int
    slots: int
    groups: int
    pages: str  # what backs the slots: arena page kind, "device", or "per-group" (budget=None)
    prefetch_depth: int
    bytes_streamed: int = 0
    fetches: int = 0
    misses: int = 0  # a group was needed and no fetch for it was queued or done
    evictions: int = 0
    forwards: int = 0
    stall_s: list[float] = field(default_factory=list)
    read_s: float = 0.0  # the pager's time reading groups
    compute_s: float = 0.0  # time spent inside the paged groups' forwards (host clock)
    group_runs: int = 0
    prefetch_trial_s: dict[int, float] = field(default_factory=dict)  # depth -> seconds timed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
