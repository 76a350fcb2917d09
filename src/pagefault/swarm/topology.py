"""Who feeds whom: one forwarding chain per model, in zone then join order.

Measured on the issue's testbed, completion time follows the busiest uploader: a full mesh
makes the origin fetcher a star (3-6x the model uploaded), while a chain makes every node
upload exactly what it downloads, at the cost of one piece time per hop (small pieces keep
that short). So each node receives from exactly one upstream, the node before it; the head
of the chain is the only one that reads the origin, so the origin serves each piece once.
Members whose heartbeat lapsed or that a peer reported corrupt drop out, and the chain
closes over the gap at the next heartbeat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Member", "Placement", "chain", "place"]


@dataclass(frozen=True)
class Member:
    node: str
    address: str  # "ip:port" of its libtorrent SSL listener
    seq: int  # join order (kept across coordinator state loss: agents resend it)
    zone: str = ""


@dataclass(frozen=True)
class Placement:
    upstream: Member | None  # None: this node is the head and fetches from the origin
    position: int
    size: int

    @property
    def fetcher(self) -> bool:
        return self.upstream is None


def chain(members: Sequence[Member]) -> list[Member]:
    """The live ``members`` in chain order: each one feeds the next."""
    return sorted(members, key=lambda m: (m.zone, m.seq, m.node))


def place(node: str, members: Sequence[Member]) -> Placement:
    """Where ``node`` sits in the chain of live ``members`` (it must be one of them)."""
    order = chain(members)
    position = next(i for i, m in enumerate(order) if m.node == node)
    upstream = order[position - 1] if position else None
    return Placement(upstream, position, len(order))
