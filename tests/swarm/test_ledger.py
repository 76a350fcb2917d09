"""The piece ledger: what readers of a swarming model wait on, written only by admission."""

from __future__ import annotations

import threading

from pagefault.swarm.ledger import PieceLedger
from tests.helpers import FakeClock


def test_timings_and_completion_follow_the_admitted_pieces() -> None:
    clock = FakeClock()
    ledger = PieceLedger(clock)
    ledger.expect(3)
    clock.now += 1.5
    ledger.add(2, waited=1.5)
    assert (ledger.first_piece_s, ledger.complete) == (1.5, False)
    assert ledger.missing() == [0, 1] and ledger.contiguous(0) == 0
    clock.now += 0.5
    ledger.add(0, waited=0.5)
    ledger.add(1, waited=0.0)
    assert ledger.complete and ledger.complete_s == 2.0
    assert ledger.contiguous(0) == 3 and ledger.contiguous(1) == 2
    buckets, total = ledger.waits.buckets()
    assert total == 2.0 and buckets[-1] == ("+Inf", 3.0)


def test_the_timeline_keeps_when_each_piece_was_first_verified() -> None:
    clock = FakeClock()
    ledger = PieceLedger(clock, wall=lambda: 1_700_000_000.0)
    assert ledger.timeline() == []  # no layout yet
    ledger.expect(3)
    clock.now += 0.25
    ledger.add(1, waited=0.25)
    clock.now += 0.5
    ledger.add(1, waited=0.5)  # admitted again (a replaced piece): the first time stays
    ledger.add(0, waited=0.0)
    assert ledger.started_at == 1_700_000_000.0
    assert ledger.timeline() == [0.75, 0.25, None]


def test_a_reader_wakes_when_its_pieces_arrive_and_not_before() -> None:
    ledger = PieceLedger()
    ledger.expect(4)
    assert ledger.wait(0, 1, timeout=0.0) is False
    results: list[bool] = []
    reader = threading.Thread(target=lambda: results.append(ledger.wait(0, 1, timeout=60)))
    reader.start()
    ledger.add(0, waited=0.0)
    assert results == [] and not ledger.has(1)  # it cannot return while piece 1 is missing
    ledger.add(1, waited=0.0)
    reader.join(timeout=60)
    assert results == [True]


def test_a_failed_job_releases_every_waiting_reader() -> None:
    ledger = PieceLedger()
    ledger.expect(4)
    results: list[bool] = []
    reader = threading.Thread(target=lambda: results.append(ledger.wait(0, 3, timeout=60)))
    reader.start()
    ledger.interrupt()
    reader.join(timeout=60)
    assert results == [False]
    assert ledger.wait(0, 3, timeout=60) is False  # and every later reader at once
