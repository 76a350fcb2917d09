"""Lining up a fleet's piece timelines: order, lag per hop, steady rate."""

from __future__ import annotations

import pytest

from pagefault.swarm.messages import Timeline
from pagefault.testing.timeline import hop_table

PIECE = 125_000  # 1 Mbit


def chain_timeline(started_at: float, first: float, every: float, pieces: int) -> Timeline:
    """A node that verified a piece every ``every`` seconds from ``first`` on."""
    return Timeline(started_at=started_at, verified_s=[first + p * every for p in range(pieces)])


def test_nodes_are_ordered_as_they_received_the_model_and_each_hop_lags() -> None:
    timelines = {
        "tail": chain_timeline(100.0, 0.30, 0.1, 50),  # started at the same moment as head
        "head": chain_timeline(100.0, 0.0, 0.1, 50),
        "middle": chain_timeline(99.9, 0.2, 0.1, 50),  # its job began 0.1 s earlier
    }
    rows = hop_table(timelines, PIECE)
    assert [r.node for r in rows] == ["head", "middle", "tail"]
    assert rows[0].lag_ms is None
    assert rows[1].lag_ms == pytest.approx(100.0)  # 99.9 + 0.2 against 100.0 + 0.0
    assert rows[2].lag_ms == pytest.approx(200.0)
    assert rows[2].first_s == pytest.approx(0.3)
    assert rows[2].last_s == pytest.approx(0.3 + 4.9)
    assert all(r.steady_mbit == pytest.approx(10.0) for r in rows)  # 1 Mbit per 0.1 s


def test_a_node_without_pieces_is_left_out_and_gaps_do_not_count() -> None:
    partial = Timeline(started_at=0.0, verified_s=[1.0, None, 1.2, None])
    rows = hop_table({"none": Timeline(started_at=0.0, verified_s=[None] * 4), "p": partial}, PIECE)
    assert [r.node for r in rows] == ["p"]
    assert rows[0].steady_mbit == 0.0  # two pieces: too few to call a rate
    assert hop_table({}, PIECE) == []
