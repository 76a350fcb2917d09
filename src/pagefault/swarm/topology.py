"""Who feeds whom: interleaved forwarding trees over disjoint piece stripes (SplitStream).

Measured on the issue's testbed, completion time follows the busiest uploader: a full
mesh makes the origin fetcher a star (3-6x the model uploaded). A forwarding chain makes
every node upload exactly what it downloads, but its depth is the fleet size: every hop
adds a piece time and a hop latency, linear in N (60x the link floor at 1,000 nodes in
``pagefault swarm simulate``).

With ``stripes=2`` the pieces are split into two stripes (piece ``p`` is in stripe
``p % 2``, each its own torrent: :mod:`pagefault.swarm.striped`) and each stripe flows
down its own binary tree: a heap over the nodes in even places then odd ones, the other
stripe the other way round (``_heap_order``). Each node is interior in at most one tree
for every N: it forwards half the model to two children, so it uploads about 1x, and the
depth is log2(N) instead of N. Each tree's root is the designated origin fetcher of its
stripe, so the origin serves each piece once. ``stripes=1`` is the chain (a heap of
fanout 1). (More stripes slow every hop, since each runs at 1/stripes of the link, and
the halves no longer keep the interiors apart.)

Which wins depends on the network. On this project's testbed (shaped veths without
per-flow fair queueing, 2 CPUs) the chain still does at every N measured (4-16): a
parent's two child flows and the two roots' origin flows share their links unevenly, a
tree node's first piece comes later (10 Mbit/s: trees 1.05-1.2x the chain's time;
docs/benchmarks.md, "Two trees, measured again"), and while the fleet joins, leaves
change parent and are fed twice (``_heap_order``: 1.3-1.6x uploaded). So the chain is
the default; the simulator puts the trees far ahead from about 100 nodes on, so they
stay one flag away.

Nodes that declare a link under half the fastest one (``pagefault agent --link-mbit``)
would slow every node below them as interior nodes, so they form a chain of their own,
fed through the fast trees' spare child slots (``_by_speed``, ``_spare_parents``).

Members whose heartbeat lapsed or that a peer reported corrupt drop out, and the chain or
trees close over the gap at the next heartbeat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pagefault.errors import ConfigError

__all__ = ["DEFAULT_STRIPES", "MAX_STRIPES", "Member", "Placement", "order", "place"]

DEFAULT_STRIPES = 1
MAX_STRIPES = 2
SLOW_SHARE = 0.5  # a declared link under this share of the fastest one is slow


@dataclass(frozen=True)
class Member:
    node: str
    address: str  # "ip:port" of its libtorrent SSL listener
    seq: int  # join order (kept across coordinator state loss: agents resend it)
    zone: str = ""
    link_mbit: float = 0.0  # its link rate as the agent declares it (0: not declared)


@dataclass(frozen=True)
class Placement:
    upstreams: tuple[Member | None, ...]  # per stripe; None: fetch that stripe from the origin
    # piece p is in stripe p % len(upstreams)
    position: int
    size: int

    @property
    def fetch(self) -> list[int]:
        """The stripes this node reads from the origin (it roots their trees)."""
        return [stripe for stripe, up in enumerate(self.upstreams) if up is None]


def order(members: Sequence[Member]) -> list[Member]:
    """The live ``members`` in placement order (zone first, so trees stay near a zone)."""
    return sorted(members, key=lambda m: (m.zone, m.seq, m.node))


def place(node: str, members: Sequence[Member], stripes: int = DEFAULT_STRIPES) -> Placement:
    """Where ``node`` sits in each stripe's tree over live ``members`` (it is one of them)."""
    if not 1 <= stripes <= MAX_STRIPES:
        raise ConfigError(f"stripes must be 1..{MAX_STRIPES}, got {stripes}")
    ordered = order(members)
    position = next(i for i, m in enumerate(ordered) if m.node == node)
    fast, slow = _by_speed(ordered)
    behind = next((i for i, m in enumerate(slow) if m.node == node), None)
    if behind is None:
        upstreams = tuple(_tree_parent(node, fast, stripe, stripes) for stripe in range(stripes))
    elif behind:
        upstreams = (slow[behind - 1],) * stripes
    else:
        upstreams = _spare_parents(fast, stripes)
    return Placement(upstreams, position, len(ordered))


def _by_speed(ordered: list[Member]) -> tuple[list[Member], list[Member]]:
    """(fast, slow) members, each in placement order. A slow node (declared link under
    SLOW_SHARE of the fastest) as a parent would slow its whole subtree, so the slow ones
    form a chain of their own behind the fast trees: each forwards the whole model to one
    slow child at its own rate, and only the chain's head takes a fast node's upload."""
    fastest = max(m.link_mbit for m in ordered)
    slow = [m for m in ordered if 0 < m.link_mbit < SLOW_SHARE * fastest]
    return [m for m in ordered if m not in slow], slow


def _tree_parent(node: str, fast: list[Member], stripe: int, stripes: int) -> Member | None:
    heap = _heap_order(fast, stripe, stripes)
    index = next(i for i, m in enumerate(heap) if m.node == node)
    return heap[(index - 1) // stripes] if index else None


def _spare_parents(fast: list[Member], stripes: int) -> tuple[Member, ...]:
    """The slow chain head's parent per stripe: fast nodes with a free child slot.

    Each fast node forwards at most ``stripes`` child-stripes (two children of half the
    model, or one of all of it), and the fast trees use all but ``stripes`` of those slots
    (N - 1 edges per tree): exactly what the slow chain's head needs, so no fast node
    uploads more than its link for it. Fewest children first, then placement order."""
    load = {m.node: 0 for m in fast}
    for stripe in range(stripes):
        for index, member in enumerate(_heap_order(fast, stripe, stripes)):
            load[member.node] += max(0, min(stripes, len(fast) - (index * stripes + 1)))
    parents = []
    for _ in range(stripes):
        parent = min(fast, key=lambda m: load[m.node])
        load[parent.node] += 1
        parents.append(parent)
    return tuple(parents)


def _heap_order(ordered: list[Member], stripe: int, stripes: int) -> list[Member]:
    """The stripe's tree as a heap: the nodes placed at ``stripe`` mod ``stripes`` first.

    For two stripes a tree's interior is its first floor(N / 2) entries, which are all
    from its own half, so no node forwards in both trees; and each root is one of the
    first nodes to join, so later joins never move a fetcher (a moved fetcher pulls
    pieces twice). A departure does move the nodes behind it to the other half; grouping
    by ``seq`` parity instead moved roots on joins (seqs are microsecond clocks), see
    docs/benchmarks.md, "Two trees, measured again".

    A join does move leaves, though: the newcomer lengthens one group, which shifts the
    other group one place in that tree's heap, so half of its leaves change parent, and
    while the old links stay up both parents feed them (the busiest node uploaded
    1.3-1.6x at N=8-16 while the fleet joined; docs/benchmarks.md, "Session 16")."""
    own = ordered[stripe::stripes]
    rest = [m for i, m in enumerate(ordered) if i % stripes != stripe]
    return own + rest
