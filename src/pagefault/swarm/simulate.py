"""A piece-level model of a swarm transfer, for fleets larger than the testbed.

It places nodes with the coordinator's own code (:func:`pagefault.swarm.topology.place`,
so a new topology is simulated the moment it exists) and moves every piece down every
edge of that placement:

* an edge carries its stripe's pieces in order, one at a time (one TCP stream), at the
  smaller of the parent's upload and the child's download, each split evenly between
  the node's edges (static shares: a child in two trees downloads half from each);
* a piece leaves a node ``hop_latency_s`` after it arrived there (HAVE, request and
  verification before forwarding), and each piece costs ``piece_overhead_s`` on the wire
  (request round trips, framing); both are calibrated from the netns testbed;
* the designated fetcher of each stripe reads it from the origin, whose uplink the
  fetchers share;
* a failed node stops forwarding at its death; one member TTL later the survivors are
  placed again (the coordinator's code again) and pieces nobody upstream holds are
  fetched from the origin once more.

The model is a recurrence over (edge, piece) in heap order, equivalent to simulating the
edge queues event by event: 10,000 nodes x 48 pieces run in seconds.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field, replace

from pagefault.errors import ConfigError
from pagefault.swarm.protocol import MEMBER_TTL_S
from pagefault.swarm.topology import Member, Placement, place

__all__ = [
    "CALIBRATION",
    "DEFAULT_QUEUEING",
    "TOPOLOGIES",
    "SimConfig",
    "SimResult",
    "simulate",
    "slow_positions",
]

TOPOLOGIES = {"chain": 1, "two-trees": 2}  # name -> stripes of topology.place
# Per queueing discipline of the testbed's links: (hop latency s, per-piece overhead s),
# fitted to its N=1 and N=8 chain runs (40 Mbit/s, 128 KiB pieces; bench/simulate_bench.py,
# docs/benchmarks.md "Swarm simulator"). The testbed's 2 CPUs are busy from N=8 on, so the
# hop latency includes waiting for a CPU. requests-first (the testbed's default since
# session 19) was fitted in session 20, on the code of that session; the others earlier.
CALIBRATION = {
    "requests-first": (0.086, 0.0015),
    "small-first": (0.295, 0.0027),
    "fifo": (0.457, 0.0030),
}
DEFAULT_QUEUEING = "requests-first"  # as pagefault.testing.netns shapes links by default
_NEVER = math.inf


@dataclass(frozen=True)
class SimConfig:
    """One simulated transfer; rates in Mbit/s, sizes in bytes."""

    nodes: int
    link_mbit: float
    size: int
    piece_size: int
    topology: str = "chain"  # the coordinator's default (topology.DEFAULT_STRIPES)
    origin_mbit: float | None = None  # default: the node link rate
    slow_fraction: float = 0.0  # this share of the nodes (spread over join order) runs at
    # slow_mbit and declares it, as `pagefault agent --link-mbit` does
    slow_mbit: float | None = None
    fail: float = 0.0  # this share of the nodes dies at random times
    queueing: str = DEFAULT_QUEUEING
    hop_latency_s: float | None = None  # default: CALIBRATION[queueing]
    piece_overhead_s: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.size < 1 or self.piece_size < 1 or self.link_mbit <= 0:
            raise ConfigError("nodes, size, piece_size and link_mbit must be positive")
        if self.topology not in TOPOLOGIES:
            raise ConfigError(f"topology {self.topology!r}: one of {', '.join(TOPOLOGIES)}")
        fitted = self.hop_latency_s is not None and self.piece_overhead_s is not None
        if self.queueing not in CALIBRATION and not fitted:
            raise ConfigError(f"queueing {self.queueing!r}: one of {', '.join(CALIBRATION)}")
        if not 0 <= self.slow_fraction <= 1 or not 0 <= self.fail < 1:
            raise ConfigError("slow_fraction must be in [0, 1] and fail in [0, 1)")


@dataclass(frozen=True)
class SimResult:
    seconds: float  # the last live node complete
    floor_seconds: float  # the slowest link moving the model once at full rate
    origin_egress: float  # origin bytes / model size
    max_upload: float  # the busiest node's upload / model size
    failed: int = 0
    completion_s: dict[str, float] = field(default_factory=dict)
    fast_seconds: float = 0.0  # the last live node at the full link rate complete

    def to_dict(self) -> dict[str, object]:
        return {
            "seconds": self.seconds,
            "fast_seconds": self.fast_seconds,
            "floor_seconds": self.floor_seconds,
            "origin_egress": self.origin_egress,
            "max_upload": self.max_upload,
            "failed": self.failed,
        }


def slow_positions(nodes: int, fraction: float) -> frozenset[int]:
    """Which join positions (1..nodes) are the slow ``fraction``: spread evenly, so the
    first to join (a tree's root under a placement blind to rates) is among the fast."""
    count = round(nodes * fraction)
    return frozenset(int((j + 0.5) * nodes / count) + 1 for j in range(count))


def simulate(config: SimConfig) -> SimResult:
    """Run the model of ``config`` (deterministic for a given ``seed``)."""
    return _Run(config).run()


class _Run:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        default_hop, default_overhead = CALIBRATION.get(config.queueing, (0.0, 0.0))
        self.hop = default_hop if config.hop_latency_s is None else config.hop_latency_s
        self.overhead = (
            default_overhead if config.piece_overhead_s is None else config.piece_overhead_s
        )
        self.pieces = -(-config.size // config.piece_size)
        self.stripes = TOPOLOGIES[config.topology]
        slow = slow_positions(config.nodes, config.slow_fraction)
        slow_mbit = config.slow_mbit or config.link_mbit
        self.members = [
            Member(f"n{i}", "", i, link_mbit=slow_mbit if i in slow else config.link_mbit)
            for i in range(1, config.nodes + 1)
        ]
        self.rate = {m.node: _bytes_per_s(m.link_mbit) for m in self.members}
        self.origin_rate = _bytes_per_s(config.origin_mbit or config.link_mbit)
        self.arrival = {m.node: [_NEVER] * self.pieces for m in self.members}
        self.uploaded = dict.fromkeys(self.rate, 0)
        self.origin_bytes = 0
        self.feeds: dict[tuple[str, int], str | None] = {}  # (node, stripe) -> its upstream
        self.sent: dict[tuple[str, int], tuple[str | None, int]] = {}  # who sent what

    def run(self) -> SimResult:
        deaths = self._deaths()
        live = list(self.members)
        start = 0.0
        for dead, died_at in [*deaths, (None, _NEVER)]:
            self._phase(live, start, until=died_at)
            if dead is None:
                break
            self._cut(dead, died_at)
            live = [m for m in live if m.node != dead]
            start = died_at
        done = {m.node: max(self.arrival[m.node]) for m in live}
        config = self.config
        slowest = min([self.origin_rate, *(self.rate[m.node] for m in live)])
        fast = [done[m.node] for m in live if m.link_mbit >= config.link_mbit] or [0.0]
        return SimResult(
            seconds=max(done.values()),
            fast_seconds=max(fast),
            floor_seconds=config.size / slowest,
            origin_egress=self.origin_bytes / config.size,
            max_upload=max(self.uploaded.values()) / config.size,
            failed=len(deaths),
            completion_s=done,
        )

    def _deaths(self) -> list[tuple[str, float]]:
        """Which nodes die and when: uniform over the failure-free transfer time."""
        count = round(self.config.nodes * self.config.fail)
        if not count:
            return []
        horizon = _Run(replace(self.config, fail=0.0)).run().seconds
        rng = random.Random(self.config.seed)
        chosen = rng.sample([m.node for m in self.members], count)
        return sorted(((node, rng.uniform(0, horizon)) for node in chosen), key=lambda d: d[1])

    def _phase(self, live: list[Member], start: float, *, until: float) -> None:
        """Move every missing piece over the placement of ``live`` from ``start`` on; an
        edge that is new since the last placement starts one member TTL later (the time
        the coordinator takes to notice a death and place the survivors again)."""
        placements = {m.node: place(m.node, live, self.stripes) for m in live}
        children: dict[str, int] = dict.fromkeys(placements, 0)
        fetchers = 0
        for placement in placements.values():
            for up in placement.upstreams:
                if up is None:
                    fetchers += 1
                else:
                    children[up.node] += 1
        for stripe in range(self.stripes):
            for node in _parents_first(placements, stripe):
                up = placements[node].upstreams[stripe]
                parent = None if up is None else up.node
                moved = (node, stripe) in self.feeds and self.feeds[node, stripe] != parent
                self.feeds[node, stripe] = parent
                down = self.rate[node] / self.stripes
                if parent is None:
                    rate = min(self.origin_rate / max(1, fetchers), down)
                else:
                    rate = min(self.rate[parent] / children[parent], down)
                begin = start + MEMBER_TTL_S if moved else start
                self._edge(parent, node, stripe=stripe, rate=rate, start=begin, until=until)

    def _edge(
        self,
        parent: str | None,
        child: str,
        *,
        stripe: int,
        rate: float,
        start: float,
        until: float,
    ) -> None:
        """The child's missing pieces of ``stripe``, in order, over one stream."""
        free = start
        have = self.arrival[child]
        for piece in range(stripe, self.pieces, self.stripes):
            if have[piece] < _NEVER:
                continue
            ready = start if parent is None else self.arrival[parent][piece] + self.hop
            if ready == _NEVER:
                continue  # the parent never gets it in this phase
            begin = max(ready, free)
            if begin >= until:
                break  # a node dies then; the next placement carries on
            size = min(self.config.piece_size, self.config.size - piece * self.config.piece_size)
            free = begin + size / rate + self.overhead
            have[piece] = free
            self.sent[child, piece] = (parent, size)
            self._count(parent, size)

    def _count(self, parent: str | None, size: int) -> None:
        if parent is None:
            self.origin_bytes += size
        else:
            self.uploaded[parent] += size

    def _cut(self, dead: str, died_at: float) -> None:
        """Undo what this phase planned past ``died_at``: the next phase, placed without
        the dead node, moves those pieces again (and the dead node's are gone with it)."""
        for node, have in self.arrival.items():
            for piece, when in enumerate(have):
                if when > died_at and when < _NEVER:
                    have[piece] = _NEVER
                    parent, size = self.sent.pop((node, piece))
                    self._count(parent, -size)  # never sent: the next phase sends it
        self.arrival[dead] = [_NEVER] * self.pieces


def _parents_first(placements: dict[str, Placement], stripe: int) -> list[str]:
    """The nodes of ``stripe``'s tree, each after its upstream (breadth first from the root)."""
    below: dict[str | None, list[str]] = {}
    for node, placement in placements.items():
        up = placement.upstreams[stripe]
        below.setdefault(None if up is None else up.node, []).append(node)
    ordered: list[str] = []
    queue = deque(below.get(None, []))
    while queue:
        node = queue.popleft()
        ordered.append(node)
        queue.extend(below.get(node, []))
    return ordered


def _bytes_per_s(mbit: float) -> float:
    return mbit * 1e6 / 8
