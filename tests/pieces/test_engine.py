"""The piece engine: results in order, bounded queue, the first error stops the rest."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from pagefault.errors import IntegrityError
from pagefault.pieces import map_pieces


def test_results_come_back_in_job_order() -> None:
    assert map_pieces(lambda n: n * 3, range(50), threads=4, name="t") == [n * 3 for n in range(50)]
    assert map_pieces(lambda n: n, [], threads=4, name="t") == []


def test_the_first_error_cancels_the_pieces_not_yet_started() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def work(piece: int) -> int:
        with lock:
            started.append(piece)
        if piece == 5:
            raise IntegrityError(f"piece {piece} fails its digest")
        return piece

    with pytest.raises(IntegrityError, match="piece 5"):
        map_pieces(work, range(10_000), threads=2, name="t")
    # at most two pieces queued per thread beyond the failing one ever started
    assert len(started) <= 5 + 1 + 2 * 2 + 2


def test_jobs_are_drawn_only_as_pieces_finish() -> None:
    """A model of a million pieces never sits in a queue: at most two per thread ahead."""
    drawn = finished = most_ahead = 0
    lock = threading.Lock()

    def jobs() -> Iterator[int]:
        nonlocal drawn, most_ahead
        for piece in range(40):
            with lock:
                drawn += 1
                most_ahead = max(most_ahead, drawn - finished)
            yield piece

    def work(piece: int) -> int:
        nonlocal finished
        with lock:
            finished += 1
        return piece

    assert map_pieces(work, jobs(), threads=3, name="t") == list(range(40))
    assert most_ahead <= 2 * 3
