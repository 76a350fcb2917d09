"""A fleet's piece timelines, hop by hop: where a chain's time goes.

Every agent records when it verified each piece (``GET /v1/models/{id}/timeline``). On one
machine the nodes share a clock, so the timelines line up: ordered by when each node held
most of the model (a chain's order), a node's lag behind the node before it, piece by
piece, is that hop's delay, and its payload rate over the middle of the transfer says
whether it kept up. Used by ``bench/swarm_bench.py --timeline``.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from pagefault.swarm.messages import Timeline

__all__ = ["NodeTimeline", "hop_table"]

_STEADY = (0.2, 0.8)  # the share of a node's pieces its steady rate is measured over


@dataclass(frozen=True)
class NodeTimeline:
    """One node's transfer; times in seconds after the fleet's first verified piece."""

    node: str
    first_s: float
    last_s: float
    steady_mbit: float  # payload Mbit/s over the middle of its pieces (piece-size based)
    lag_ms: float | None  # median lag per piece behind the node before it (None: the first)


def hop_table(timelines: Mapping[str, Timeline], piece_bytes: int) -> list[NodeTimeline]:
    """The nodes in the order they received the model, with their first and last piece,
    steady rate and lag behind the node before them. Nodes with no piece are left out."""
    at = {
        node: {p: t.started_at + s for p, s in enumerate(t.verified_s) if s is not None}
        for node, t in timelines.items()
    }
    order = sorted((n for n in at if at[n]), key=lambda n: statistics.median(at[n].values()))
    if not order:
        return []
    start = min(min(at[n].values()) for n in order)
    rows = []
    for place, node in enumerate(order):
        times = sorted(at[node].values())
        lag = None
        if place:
            ahead = at[order[place - 1]]
            both = [at[node][p] - ahead[p] for p in at[node] if p in ahead]
            lag = statistics.median(both) * 1e3 if both else None
        rows.append(
            NodeTimeline(
                node, times[0] - start, times[-1] - start, _steady_mbit(times, piece_bytes), lag
            )
        )
    return rows


def _steady_mbit(times: list[float], piece_bytes: int) -> float:
    """Payload rate over the middle of a node's sorted verification times (0.0 when too few
    pieces to tell)."""
    low, high = (int(share * len(times)) for share in _STEADY)
    if high - low < 2 or times[high - 1] <= times[low]:
        return 0.0
    return (high - 1 - low) * piece_bytes * 8 / (times[high - 1] - times[low]) / 1e6
