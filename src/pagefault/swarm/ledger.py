"""Which pieces of one model are verified on this node, and since when: what readers wait on.

Admission is the only writer (a piece goes in once its stored bytes match the manifest);
the job, the local API's feeds and the metrics only read. Keeping this record apart
from the swarm's machinery means a reader never waits on a heartbeat or a placement
change, only on the pieces it asked for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pagefault.swarm.metrics import WaitHistogram

__all__ = ["PieceLedger"]


class PieceLedger:
    """The admitted pieces of a model of ``total`` pieces (set once the layout is known)."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        self.started = clock()
        self.started_at = wall()  # epoch seconds: timelines of different nodes line up
        self.total: int | None = None
        self.first_piece_s: float | None = None
        self.complete_s: float | None = None
        self.waits = WaitHistogram()  # seconds from one verified piece to the next
        self._have: dict[int, float] = {}  # piece -> seconds after start it was verified
        self._order: list[int] = []  # the pieces in the order they were verified
        self._interrupted = False
        self._changed = threading.Condition()

    def expect(self, total: int) -> None:
        """The model's layout is known: it has ``total`` pieces."""
        with self._changed:
            self.total = total

    def add(self, piece: int, waited: float) -> None:
        """Piece ``piece`` is verified and stored, ``waited`` seconds after the previous one."""
        with self._changed:
            now = self._clock() - self.started
            if piece not in self._have:
                self._have[piece] = now
                self._order.append(piece)
            self.waits.observe(waited)
            if self.first_piece_s is None:
                self.first_piece_s = now
            if self.complete_s is None and len(self._have) == self.total:
                self.complete_s = now
            self._changed.notify_all()

    def interrupt(self) -> None:
        """The job failed: every waiting reader returns now (and every later one at once)."""
        with self._changed:
            self._interrupted = True
            self._changed.notify_all()

    @property
    def count(self) -> int:
        return len(self._have)

    @property
    def complete(self) -> bool:
        return self.complete_s is not None

    def has(self, piece: int) -> bool:
        return piece in self._have

    def timeline(self) -> list[float | None]:
        """Per piece, seconds after the start when it was verified (None: not yet)."""
        with self._changed:
            return [self._have.get(p) for p in range(self.total or 0)]

    def missing(self) -> list[int]:
        """The pieces not yet here, in order (none before the layout is known)."""
        with self._changed:
            return [p for p in range(self.total or 0) if p not in self._have]

    def since(self, cursor: int, timeout: float) -> list[int]:
        """The pieces verified after the first ``cursor`` ones, in the order they came;
        blocks until there is one, for at most ``timeout`` seconds ([] then, or at once
        when interrupted). A follower keeps its cursor (the pieces it has seen) and needs
        no other state: what it has not seen is here until it asks. A slice of a list, so
        a feed of a model of a million pieces costs each line only its own pieces."""
        deadline = self._clock() + timeout
        with self._changed:
            while len(self._order) <= cursor:
                left = deadline - self._clock()
                if left <= 0 or self._interrupted:
                    return []
                self._changed.wait(left)
            return self._order[cursor:]
