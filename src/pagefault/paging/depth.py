"""How far to read ahead, chosen by timing forwards rather than assumed.

The model ``time per forward ~ max(compute, bytes / read rate)`` holds when reading and
computing use different resources (a GPU and its copy engine, a disk). Where they share
them it fails: on the 2-vCPU development VM, reading the next layer into slot memory
while a layer computes slowed the compute from 7.0 to 16.6 ms per layer and made each
token 12% slower than reading each layer only when it was needed. So the depth the
model suggests is tried against none, alternately over a few forwards, and the faster
is kept.
"""

from __future__ import annotations

import math

__all__ = ["DepthTrial", "modelled_depth"]


def modelled_depth(*, read_s: float, compute_s: float, room: int) -> int:
    """Layers to read ahead so a layer's read hides behind the compute before it."""
    if room <= 0:
        return 0
    if read_s <= 0 or compute_s <= 0:
        return room
    return min(room, max(1, math.ceil(read_s / compute_s)))


class DepthTrial:
    """Alternates ``candidate`` and 0 for ``rounds`` forwards each, then keeps the faster."""

    def __init__(self, candidate: int, *, rounds: int = 2) -> None:
        self._plan = [candidate, 0] * rounds if candidate else []
        self.seconds: dict[int, float] = {}
        self._forwards: dict[int, int] = {}

    def next_depth(self) -> int | None:
        """The depth the next forward runs with, or None once the trial is over."""
        return self._plan[0] if self._plan else None

    def record(self, depth: int, seconds: float) -> None:
        """One forward ran at ``depth`` (the one ``next_depth`` gave) in ``seconds``."""
        self._plan.pop(0)
        self.seconds[depth] = self.seconds.get(depth, 0.0) + seconds
        self._forwards[depth] = self._forwards.get(depth, 0) + 1

    def chosen(self) -> int | None:
        """The faster depth once every planned forward ran; None before."""
        if self._plan or not self.seconds:
            return None
        return min(self.seconds, key=lambda d: self.seconds[d] / self._forwards[d])
