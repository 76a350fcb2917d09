"""The stall policy on a fake clock: when a node gives up on its swarm, and when it waits."""

from __future__ import annotations

from pagefault.swarm.stall import TAIL_PIECES, TAIL_STALL_S, StallPolicy
from tests.helpers import FakeClock


def test_a_broken_upstream_link_falls_back_after_stall_s() -> None:
    clock = FakeClock()
    policy = StallPolicy(10.0, clock)
    clock.now += 9.9
    assert policy.stalled(missing=50, due=True, coordinated=True) is None
    clock.now += 0.2
    assert policy.stalled(missing=50, due=True, coordinated=True) == "no piece for 10 s"
    policy.restart()
    assert policy.stalled(missing=50, due=True, coordinated=True) is None


def test_a_node_whose_upstream_has_nothing_new_waits_for_it() -> None:
    clock = FakeClock()
    policy = StallPolicy(10.0, clock)
    clock.now += 1000
    assert policy.stalled(missing=50, due=False, coordinated=True) is None
    # without a coordinator nobody else will act: the node reads the origin itself
    assert policy.stalled(missing=50, due=False, coordinated=False) is not None


def test_the_last_pieces_wait_only_the_tail_timeout() -> None:
    clock = FakeClock()
    policy = StallPolicy(10.0, clock)
    clock.now += TAIL_STALL_S + 0.1
    assert policy.stalled(missing=TAIL_PIECES + 1, due=True, coordinated=True) is None
    assert policy.stalled(missing=TAIL_PIECES, due=True, coordinated=True) is not None


def test_progress_restarts_the_wait_and_reports_the_gap() -> None:
    clock = FakeClock()
    policy = StallPolicy(10.0, clock)
    clock.now += 7.5
    assert policy.progressed() == 7.5
    clock.now += 7.5
    assert policy.stalled(missing=50, due=True, coordinated=True) is None
    assert policy.stalled(missing=0, due=True, coordinated=False) is None  # complete
