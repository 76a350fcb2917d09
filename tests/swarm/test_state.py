"""The coordinator's Redis state through a Redis restart: join order survives, so the
chain's head (the origin fetcher) does not move and the origin serves each piece once."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
import redis

from pagefault.errors import ControlError
from pagefault.swarm.coordinator import Coordinator
from pagefault.swarm.credentials import SwarmCA
from pagefault.swarm.messages import Heartbeat
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


def test_a_node_whose_first_beat_is_the_first_after_an_outage_is_not_placed(
    server: LocalRedis,
) -> None:
    """Caught in test_redis_restart_mid_run (1 of 25 runs under load): n1's first beat
    failed while Redis was down, so it had no seq to resend, and its beat was the first
    back. The store then held only n1, which was told to fetch everything while the old
    head n2 still did. The coordinator saw the outage, so it says "settling" for one
    member TTL after the store answers again, whoever beats first."""
    client = redis.Redis.from_url(server.url, socket_timeout=1, retry_on_error=[])
    coordinator = Coordinator(SwarmState(client, ttl_s=0.3), SwarmCA.create(), "t")
    head = coordinator.heartbeat("s", "n2", Heartbeat(address="10.0.0.2:6881"))
    assert head.fetch == [0] and not head.settling
    server.kill()
    with pytest.raises(ControlError) as down:
        coordinator.heartbeat("s", "n1", Heartbeat(address="10.0.0.1:6881"))
    assert down.value.status == 503
    server.start()
    first_back = coordinator.heartbeat("s", "n1", Heartbeat(address="10.0.0.1:6881"))
    assert first_back.settling and first_back.fetch == []
    deadline = time.monotonic() + 10
    while coordinator.heartbeat(
        "s", "n2", Heartbeat(address="10.0.0.2:6881", seq=head.seq)
    ).settling:
        assert time.monotonic() < deadline, "the coordinator never settled"
        time.sleep(0.05)
    placed = coordinator.heartbeat(
        "s", "n1", Heartbeat(address="10.0.0.1:6881", seq=first_back.seq)
    )
    assert placed.fetch == [] and placed.upstreams[0] is not None
    assert placed.upstreams[0].node == "n2"  # the old head stays the head
