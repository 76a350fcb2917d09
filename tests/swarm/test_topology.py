"""Placement: the chain and the two interleaved stripe trees, for every fleet size."""

from __future__ import annotations

from collections import Counter

import pytest

from pagefault.errors import ConfigError
from pagefault.swarm.topology import MAX_STRIPES, Member, order, place


def _fleet(size: int, zones: str = "") -> list[Member]:
    return [
        Member(f"n{i}", f"10.0.0.{i}:6881", seq=i, zone=zones[i % len(zones)] if zones else "")
        for i in range(size)
    ]


def _depth(node: str, stripe: int, fleet: list[Member], stripes: int) -> int:
    hops = 0
    upstream = place(node, fleet, stripes).upstreams[stripe]
    while upstream is not None:
        hops += 1
        assert hops <= len(fleet), "placement has a cycle"
        upstream = place(upstream.node, fleet, stripes).upstreams[stripe]
    return hops


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8, 15, 16, 17, 100])
def test_chain_feeds_each_node_from_the_one_before(size: int) -> None:
    fleet = _fleet(size)
    for position, member in enumerate(fleet):
        placement = place(member.node, fleet, stripes=1)
        assert placement.position == position
        assert placement.upstreams == ((fleet[position - 1] if position else None),)
        assert placement.fetch == ([0] if position == 0 else [])


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 100])
def test_two_trees_root_each_stripe_once_and_keep_uploads_at_one_model(size: int) -> None:
    fleet = _fleet(size)
    roots: Counter[int] = Counter()
    children: Counter[tuple[str, int]] = Counter()
    for member in fleet:
        placement = place(member.node, fleet, stripes=2)
        roots.update(placement.fetch)
        for stripe, upstream in enumerate(placement.upstreams):
            if upstream is not None:
                assert upstream.node != member.node
                children[(upstream.node, stripe)] += 1
    assert roots == Counter({0: 1, 1: 1})  # the origin serves each stripe once
    interior = Counter(node for node, _ in children)
    assert all(count == 1 for count in interior.values()), "a node forwards in both trees"
    assert all(count <= 2 for count in children.values())  # half the model to <= 2 children
    depth = max(_depth(m.node, s, fleet, 2) for m in fleet for s in range(2))
    assert depth <= max(1, size.bit_length())  # log2(N), not N


def test_tree_roots_stay_put_as_the_fleet_grows() -> None:
    """A moved root would fetch its stripe from the origin a second time."""
    for size in range(2, 20):
        fleet = _fleet(size)
        roots = {s: m.node for m in fleet for s in place(m.node, fleet, stripes=2).fetch}
        assert roots == {0: "n0", 1: "n1"}


def test_a_join_moves_no_interior_node_in_either_tree() -> None:
    """Interior nodes keep their parent (leaves of the other group do move:
    ``topology._heap_order``)."""
    for size in range(2, 40):
        before, after = _fleet(size), _fleet(size + 1)
        for stripe in range(2):
            interior = {
                up.node for m in before if (up := place(m.node, before, 2).upstreams[stripe])
            }
            for member in before:
                if member.node in interior:
                    old = place(member.node, before, 2).upstreams[stripe]
                    assert place(member.node, after, 2).upstreams[stripe] == old


def test_zones_stay_together_and_join_order_breaks_ties() -> None:
    fleet = _fleet(6, zones="ab")
    assert [m.node for m in order(fleet)] == ["n0", "n2", "n4", "n1", "n3", "n5"]


def test_unsupported_stripe_counts_are_refused() -> None:
    fleet = _fleet(4)
    with pytest.raises(ConfigError, match="stripes"):
        place("n0", fleet, stripes=MAX_STRIPES + 1)
    with pytest.raises(ConfigError, match="stripes"):
        place("n0", fleet, stripes=0)


def _mixed_fleet(size: int, slow_every: int) -> list[Member]:
    """Every ``slow_every``-th node declares a quarter of the others' link rate."""
    return [
        Member(f"n{i}", f"10.0.0.{i}:6881", seq=i, link_mbit=10.0 if i % slow_every == 1 else 40.0)
        for i in range(size)
    ]


@pytest.mark.parametrize("stripes", [1, 2])
@pytest.mark.parametrize("size", [2, 3, 4, 5, 8, 9, 16, 17, 40])
def test_slow_nodes_feed_only_slow_nodes_and_no_fast_node_forwards_more_than_its_link(
    size: int, stripes: int
) -> None:
    fleet = _mixed_fleet(size, slow_every=4)
    slow = {m.node for m in fleet if m.link_mbit < 20}
    child_stripes: Counter[str] = Counter()
    for member in fleet:
        placement = place(member.node, fleet, stripes)
        for upstream in placement.upstreams:
            if upstream is None:
                assert member.node not in slow  # only fast nodes read the origin
                continue
            child_stripes[upstream.node] += 1
            if upstream.node in slow:
                assert member.node in slow, "a slow node feeds a fast one"
        for stripe in range(stripes):  # no cycle: every stripe reaches it from its root
            assert _depth(member.node, stripe, fleet, stripes) < size
    assert all(count <= stripes for count in child_stripes.values())  # <= 1x the model
    assert sorted(s for m in fleet for s in place(m.node, fleet, stripes).fetch) == list(
        range(stripes)
    )


def test_undeclared_links_are_placed_as_before() -> None:
    fleet = _fleet(9)
    declared = [Member(m.node, m.address, m.seq, link_mbit=40.0) for m in fleet]
    for member, same in zip(fleet, declared, strict=True):
        ups = place(member.node, fleet).upstreams
        assert [u and u.node for u in ups] == [
            u and u.node for u in place(same.node, declared).upstreams
        ]
