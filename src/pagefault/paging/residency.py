"""Which group sits in which slot, and which to evict: a pure policy, no I/O, no torch.

Inference runs the groups in one fixed cycle (layer 0, 1, ..., n-1, then the next
forward), so the future is known: evicting the resident group whose next use is furthest
away (Belady's rule) is optimal, and after a group runs it is that group. A group being
run is never evicted. The pager fills slots first in, first out, so a slot whose fetch is
still in flight can be handed on: the new fetch queues behind the old one.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Residency"]


class Residency:
    """Slots ``0..slots-1`` holding groups ``0..groups-1``; the cycle order is replaceable."""

    def __init__(self, *, groups: int, slots: int) -> None:
        if slots < 1:
            raise ValueError("a paged model needs at least one slot")
        self.slots = slots
        self.order: list[int] = list(range(groups))
        self._position = {g: i for i, g in enumerate(self.order)}
        self._slot_of: dict[int, int] = {}
        self._group_in: list[int | None] = [None] * slots
        self.running: int | None = None

    def set_order(self, order: Sequence[int]) -> None:
        """The cycle as observed; it must name every group once."""
        if sorted(order) != sorted(self.order):
            raise ValueError(f"order {list(order)} is not a permutation of the groups")
        self.order = list(order)
        self._position = {g: i for i, g in enumerate(self.order)}

    def slot_of(self, group: int) -> int | None:
        return self._slot_of.get(group)

    def upcoming(self, group: int, depth: int) -> list[int]:
        """The ``depth`` groups that run after ``group``, wrapping into the next forward."""
        n = len(self.order)
        start = self._position[group]
        return [self.order[(start + k) % n] for k in range(1, min(depth, n - 1) + 1)]

    def place(self, group: int, *, required: bool) -> tuple[int, int | None] | None:
        """A slot for ``group`` and the group evicted from it (None if it was empty).

        A prefetch (``required=False``) evicts only a group needed later than ``group``;
        a group about to run takes the best slot whatever it holds. None when no slot can
        be had (only the running group's, or nothing worth evicting).
        """
        if group in self._slot_of:
            raise ValueError(f"group {group} already has slot {self._slot_of[group]}")
        slot, victim = self._choose(group, required)
        if slot is None:
            return None
        if victim is not None:
            del self._slot_of[victim]
        self._slot_of[group] = slot
        self._group_in[slot] = group
        return slot, victim

    def forget(self, group: int) -> None:
        """Free ``group``'s slot (its fetch failed, or the model is closing)."""
        slot = self._slot_of.pop(group, None)
        if slot is not None:
            self._group_in[slot] = None

    def _choose(self, group: int, required: bool) -> tuple[int | None, int | None]:
        for slot, held in enumerate(self._group_in):
            if held is None:
                return slot, None
        candidates = [
            (self._distance(held), slot, held)
            for slot, held in enumerate(self._group_in)
            if held is not None and held != self.running
        ]
        if not candidates:
            return None, None
        distance, slot, held = max(candidates)
        if not required and distance <= self._distance(group):
            return None, None
        return slot, held

    def _distance(self, group: int) -> int:
        """How many groups run before ``group`` runs next (0: it is running now)."""
        if self.running is None:
            return self._position[group]
        n = len(self.order)
        return (self._position[group] - self._position[self.running]) % n
