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
    assert ledger.missing() == [0, 1]
    clock.now += 0.5
    ledger.add(0, waited=0.5)
    ledger.add(1, waited=0.0)
    assert ledger.complete and ledger.complete_s == 2.0
    assert ledger.missing() == []
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


def test_a_follower_gets_each_piece_once_in_the_order_it_came() -> None:
    ledger = PieceLedger()
    ledger.expect(4)
    assert ledger.since(0, timeout=0.0) == []
    got: list[list[int]] = []
    follower = threading.Thread(target=lambda: got.append(ledger.since(0, timeout=60)))
    follower.start()
    assert got == []  # nothing to return yet: it waits
    ledger.add(2, waited=0.0)
    follower.join(timeout=60)
    assert got == [[2]]
    ledger.add(0, waited=0.0)
    ledger.add(2, waited=0.0)  # admitted again (a replaced piece): not news
    assert ledger.since(0, timeout=0.0) == [2, 0]
    assert ledger.since(1, timeout=0.0) == [0]  # after the first one it has seen


def test_a_failed_job_releases_every_waiting_follower() -> None:
    ledger = PieceLedger()
    ledger.expect(4)
    got: list[list[int]] = []
    follower = threading.Thread(target=lambda: got.append(ledger.since(0, timeout=60)))
    follower.start()
    ledger.interrupt()
    follower.join(timeout=60)
    assert got == [[]]
    assert ledger.since(0, timeout=60) == []  # and every later one at once
