"""When a node stops waiting for its swarm and reads the missing pieces from the origin.

A small policy over an injected clock, so it is tested without sleeping: the job reports
each verified piece (``progressed``) and asks, once a heartbeat, whether it has waited too
long (``stalled``). A node whose upstream holds nothing new just waits: the upstream is the
one to act (without this, the tail of a long chain whose head just died would time out and
pull the whole model from the origin while the new head is already refilling).
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["TAIL_PIECES", "TAIL_STALL_S", "StallPolicy"]

# The last few pieces: a node stuck on them (its upstream gone, or a HAVE that never came)
# should not wait the full stall_s. Before the agent kept redundant connections open, one
# 16-node fleet in five lost its tail this way (docs/benchmarks.md, swarm). So a node
# missing at most TAIL_PIECES waits only TAIL_STALL_S before reading them from the origin.
TAIL_PIECES = 4
TAIL_STALL_S = 2.0


class StallPolicy:
    """``stall_s`` seconds without a piece (``TAIL_STALL_S`` for the last ``TAIL_PIECES``)."""

    def __init__(self, stall_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_s = stall_s
        self._clock = clock
        self._last = clock()

    def progressed(self) -> float:
        """A piece arrived: restart the wait; returns the seconds since the previous one."""
        now = self._clock()
        waited, self._last = now - self._last, now
        return waited

    def restart(self) -> None:
        """The node just acted (started an origin fetch): give it a full wait again."""
        self._last = self._clock()

    def stalled(self, *, missing: int, due: bool, coordinated: bool) -> str | None:
        """Why the node should read its ``missing`` pieces from the origin now, or None.

        ``coordinated``: a coordinator answered this heartbeat (else nobody else will act);
        ``due``: pieces should be arriving (an upstream holds pieces this node lacks, or
        this node reads a stripe from the origin itself), yet none arrived."""
        if missing == 0 or (coordinated and not due):
            return None
        patience = min(self.stall_s, TAIL_STALL_S) if missing <= TAIL_PIECES else self.stall_s
        if self._clock() - self._last > patience:
            return f"no piece for {patience:.0f} s"
        return None
