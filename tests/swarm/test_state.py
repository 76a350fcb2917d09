"""The coordinator's Redis state through a Redis restart: join order survives, so the
chain's head (the origin fetcher) does not move and the origin serves each piece once."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
import redis

from pagefault.swarm.state import Joined, SwarmState
from pagefault.swarm.topology import Member, place
from pagefault.testing.redisd import LocalRedis

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed"
)


@pytest.fixture
def server() -> Iterator[LocalRedis]:
    with LocalRedis() as local:
        yield local


def _state(server: LocalRedis, ttl_s: float = 30) -> SwarmState:
    return SwarmState(redis.Redis.from_url(server.url), ttl_s=ttl_s)


def _beat(state: SwarmState, node: str, seq: int = -1) -> Joined:
    return state.heartbeat("s", Member(node, f"10.0.0.{node[1:]}:6881", seq), {})


def _join(state: SwarmState, node: str, seq: int = -1) -> int:
    return _beat(state, node, seq).member.seq


def _head(state: SwarmState, node: str) -> str | None:
    members = [m for m, _ in state.live("s")]
    up = place(node, members, stripes=1).upstreams[0]  # the chain
    return up.node if up is not None else None


def test_a_member_keeps_its_seq_and_joins_are_ordered(server: LocalRedis) -> None:
    state = _state(server)
    first, second = _join(state, "n1"), _join(state, "n2")
    assert first < second
    assert _join(state, "n1") == first  # a member that forgot its seq gets it back
    assert _join(state, "n2", second) == second


def test_a_node_joining_right_after_a_redis_restart_sorts_after_the_old_members(
    server: LocalRedis,
) -> None:
    """The CI failure this guards: the newcomer got seq 1, tied with the old head, and
    took its place, so a second node read the same pieces from the origin."""
    state = _state(server)
    seqs = {node: _join(state, node) for node in ("n1", "n3")}
    server.kill()
    server.start()
    state = _state(server)
    newcomer = _join(state, "n2")  # before the old members' first beat back
    for node in ("n3", "n1"):
        assert _join(state, node, seqs[node]) == seqs[node]
    assert newcomer > max(seqs.values())
    assert _head(state, "n1") is None  # n1 still roots the chain
    assert _head(state, "n3") == "n1" and _head(state, "n2") == "n3"
    assert _join(state, "n4") > newcomer


def test_placements_wait_one_member_ttl_after_the_state_was_lost(server: LocalRedis) -> None:
    """The first beats back see part of the fleet; placing over it would make a second
    head fetch from the origin, so the coordinator says "settling" until all beat again."""
    state = _state(server, ttl_s=0.3)
    seq = _join(state, "n1")
    assert not _beat(state, "n2").settling  # a fresh swarm places at once
    server.kill()
    server.start()
    state = _state(server, ttl_s=0.3)
    assert _beat(state, "n1", seq).settling
    assert _beat(state, "n3").settling  # a newcomer waits too
    deadline = time.monotonic() + 10
    while _beat(state, "n1", seq).settling:  # ends with the flag's TTL, not extended
        assert time.monotonic() < deadline, "the state never settled"
        time.sleep(0.05)
