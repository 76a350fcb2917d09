"""When a designated fetcher may read a piece from the origin.

The coordinator names the fetchers, but what a fetcher reads ahead of the swarm is what
the origin serves twice if the fetcher dies or the role moves. So the gate lets a piece
through only if it is in a stripe this node roots, no connected peer holds it already,
and it is at most FETCH_LEAD_BYTES ahead of the best-fed peer: a lead of a few pieces
keeps the downstream link busy (1, 3 and 6 MiB measured: 3 is best, docs/benchmarks.md)
and bounds the kill test's extra egress. Urgent pieces (each file's first, which every
node's loaders need before their first tensor) skip the lead.

With several stripes, a root reads its stripes from the origin at most at the payload
rate of its declared link times the share of the stripes it roots (``--link-mbit``; 19
of 40 Mbit/s for one of two): its children take each stripe at that rate anyway (each
node's downlink carries every stripe), and two roots reading as fast as they could split
the origin unevenly (four nodes: one stripe at 25 Mbit/s, the other at 15, and three of
the four waited 2 s for the slow one; capped, the roots' stripes ended 0.05 s apart).

Held off: a connected peer of the stripe that holds more of it than this node is an
upstream, not a child (children only hold what they were sent). This node is then
fetcher only in a placement that will not last (a heartbeat of the old fetcher lapsed,
or Redis lost its state and the fleet is coming back) while the old fetcher is alive and
still reading the origin; reading too would serve those pieces twice (the Redis-restart
test saw 1.54x). Such a node downloads what the peer has instead, and once it holds as
much (the peer stopped or died) the gate opens again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pagefault.swarm.striped import StripedTorrent

__all__ = ["FETCH_LEAD_BYTES", "LEAD_WAIT_S", "LONE_DELAY_S", "FetchGate", "RateCap"]

FETCH_LEAD_BYTES = 3 << 20
LEAD_WAIT_S = 2.0  # per piece: how long a peer may take to connect or catch up
# A node alone roots every stripe, but that is often transient: nodes starting together
# join a few ms apart, and after Redis loses its state the first heartbeat back sees a
# fleet of one. So a node that starts alone reads only stripe 0 for this long, and one
# whose fleet shrank to itself reads nothing for this long, so that the real fetchers
# (placed at the next heartbeat) are the only ones to read those pieces. Those pieces are
# skipped, not waited for: a waiting piece would hold a feeder thread, and a lone node
# then read half as fast for this long (two stripes: 6.2 s against the chain's 5.4 s at
# N=1); the job starts another pass at its next heartbeat.
LONE_DELAY_S = 1.0
# Of a link's rate, what TCP over Ethernet carries as payload (1448 of every 1514 bytes
# at a 1500-byte MTU): two roots capped at half the nominal rate would together ask more
# than an origin link of that rate carries (a four-node fleet took 8.55 s so, four with
# this factor 7.49-8.48 s: noisy, and no worse).
_PAYLOAD = 1448 / 1514


class RateCap:
    """Reads of at most ``bytes_per_s`` on average, shared by the feeder's threads: each
    read reserves its turn. An idle spell earns no burst afterwards."""

    def __init__(self, bytes_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.bytes_per_s = bytes_per_s
        self._clock = clock
        self._next = clock()  # when the next read may start
        self._lock = threading.Lock()

    def reserve(self, size: int) -> float:
        """Seconds to wait before reading ``size`` bytes (0.0 when it may start now)."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + size / self.bytes_per_s
            return start - now


class FetchGate:
    def __init__(
        self,
        torrent: StripedTorrent,
        stop: threading.Event,
        urgent: frozenset[int] = frozenset(),
        *,
        link_mbit: float = 0.0,
    ):
        self.torrent = torrent
        self.urgent = urgent
        self.link_mbit = link_mbit  # declared (0: not declared, reads are not capped)
        self._cap: RateCap | None = None
        self.lead = max(2, FETCH_LEAD_BYTES // torrent.layout.piece_size)  # in pieces
        self.stop = stop
        self.fetch: frozenset[int] = frozenset()  # the coordinator's word: stripes we root
        self._fleet_size = 0  # live members at the last heartbeat (0: none yet)
        self._alone_since = 0.0  # when the fleet last started or shrank to this node alone
        self._alone_after_fleet = False  # ... by shrinking (likely transient: read nothing)

    def update(self, fetch: frozenset[int], fleet_size: int) -> None:
        """The placement of the latest heartbeat."""
        if fleet_size == 1 and self._fleet_size != 1:
            self._alone_since = time.monotonic()
            self._alone_after_fleet = self._fleet_size > 1
        self.fetch, self._fleet_size = fetch, fleet_size
        stripes = self.torrent.stripes
        if self.link_mbit > 0 and stripes > 1 and fetch:
            rate = self.link_mbit * 1e6 / 8 * _PAYLOAD * len(fetch) / stripes
            if self._cap is None or self._cap.bytes_per_s != rate:
                self._cap = RateCap(rate)
        else:
            self._cap = None

    def allows(self, piece: int) -> bool:
        """Block until ``piece`` may be read (True) or is not ours to read now (False)."""
        deadline = time.monotonic() + LEAD_WAIT_S
        stripe, rank = piece % self.torrent.stripes, piece // self.torrent.stripes
        while stripe in self.fetch and not self.stop.is_set():
            peers = self.torrent.peers_of(piece)
            if any(len(p.pieces) > piece and p.pieces[piece] for p in peers):
                return False  # a peer has it (e.g. fetched while it briefly was alone)
            fed = max((p.num_pieces for p in peers), default=0)  # of this stripe
            if fed and fed > self.torrent.stripe_pieces(stripe):
                return False  # an upstream still fetching: see "Held off" above
            if self._fleet_size == 1:  # skipped for now, not waited for (LONE_DELAY_S)
                alone_s = time.monotonic() - self._alone_since
                first = stripe == 0 and not self._alone_after_fleet
                return first or alone_s > LONE_DELAY_S
            if piece in self.urgent:
                return True
            if rank < fed + self.lead or time.monotonic() > deadline:
                self._take_turn()
                return True
            self.stop.wait(0.02)
        return False

    @property
    def origin_rate(self) -> float | None:
        """Bytes per second this node may read its stripes from the origin at (None:
        not capped: one stripe, no declared link rate, or no stripe to fetch)."""
        return None if self._cap is None else self._cap.bytes_per_s

    def _take_turn(self) -> None:
        """Wait for this read's share of the capped origin rate (if capped)."""
        cap = self._cap
        if cap is not None:
            self.stop.wait(cap.reserve(self.torrent.layout.piece_size))
