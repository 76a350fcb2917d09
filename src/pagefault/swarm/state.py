"""The coordinator's state in Redis, so coordinators are stateless and can run as replicas.

Keys (``{s}`` is the swarm id): ``pf:swarms`` (set of ids), ``pf:{s}:order`` (zset
node -> join seq), ``pf:{s}:seq`` (the highest seq handed out or resent),
``pf:{s}:node:{n}`` (address, zone and stats as JSON; expires: the heartbeat),
``pf:{s}:bad`` (nodes reported for corrupt pieces), ``pf:{s}:manifest`` (the piece
manifest a first fetcher built), ``pf:{s}:description`` (the model as the first node to
describe it found it; expires) and ``pf:{s}:describer`` (that node, while it describes),
``pf:{s}:settling`` (set for one member TTL after the state was lost). Everything is
rebuilt from heartbeats when Redis loses it: agents resend their seq, and a node joining
after the loss still sorts after every one of them (``_JOIN``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, NamedTuple

import redis

from pagefault.swarm.topology import Member

__all__ = ["Joined", "SwarmState"]


class Joined(NamedTuple):
    member: Member  # with its seq
    # Redis lost the swarm's state and members are still coming back (one member TTL):
    # a placement over the few seen so far would move the chain's head, so none is given.
    settling: bool


class SwarmState:
    def __init__(self, client: redis.Redis, *, ttl_s: float) -> None:
        self.redis = client
        self.ttl_ms = int(ttl_s * 1000)
        self._join = client.register_script(_JOIN)

    def heartbeat(self, swarm: str, member: Member, stats: dict[str, Any]) -> Joined:
        """Record a live member; assign its seq on first sight (or keep the one it sends).

        One script, so a seq is never handed out before its member is visible: two nodes
        joining at once could otherwise each see only itself and both fetch from the origin.
        """
        body = json.dumps({
            "address": member.address,
            "zone": member.zone,
            "link_mbit": member.link_mbit,
            "stats": stats,
        })  # fmt: skip
        keys = [
            "pf:swarms",
            f"pf:{swarm}:order",
            f"pf:{swarm}:seq",
            self._node_key(swarm, member.node),
            f"pf:{swarm}:settling",
        ]
        seq, settling = self._join(
            keys=keys, args=[swarm, member.node, member.seq, body, self.ttl_ms]
        )
        return Joined(dataclasses.replace(member, seq=int(seq)), bool(settling))

    def live(self, swarm: str) -> list[tuple[Member, dict[str, Any]]]:
        """Members whose heartbeat has not lapsed, minus those reported corrupt."""
        ranked: list[tuple[Any, float]] = self.redis.zrange(  # type: ignore[assignment]
            f"pf:{swarm}:order", 0, -1, withscores=True
        )
        order = [(_text(node), int(seq)) for node, seq in ranked]
        bad = set(self.bad(swarm))
        keys = [self._node_key(swarm, node) for node, _ in order]
        bodies = self.redis.mget(keys) if keys else []
        out = []
        for (node, seq), body in zip(order, bodies, strict=True):
            if body is None or node in bad:
                continue
            data = json.loads(body)
            member = Member(node, data["address"], seq, data["zone"], data.get("link_mbit", 0.0))
            out.append((member, data["stats"]))
        return out

    @staticmethod
    def _node_key(swarm: str, node: str) -> str:
        return f"pf:{swarm}:node:{node}"

    def report_bad(self, swarm: str, node: str) -> None:
        self.redis.sadd(f"pf:{swarm}:bad", node)

    def bad(self, swarm: str) -> list[str]:
        return sorted(_text(n) for n in self.redis.smembers(f"pf:{swarm}:bad"))

    def swarms(self) -> list[str]:
        return sorted(_text(s) for s in self.redis.smembers("pf:swarms"))

    def publish_manifest(self, swarm: str, data: bytes) -> bool:
        """Store the first fetcher's manifest; False if one was already published."""
        return bool(self.redis.set(f"pf:{swarm}:manifest", data, nx=True))

    def manifest(self, swarm: str) -> bytes | None:
        return _bytes(self.redis.get(f"pf:{swarm}:manifest"))

    def has_manifest(self, swarm: str) -> bool:
        return bool(self.redis.exists(f"pf:{swarm}:manifest"))

    def claim_describer(self, swarm: str, node: str, *, ttl_s: float) -> bool:
        """Make ``node`` the one to describe the model for ``ttl_s`` seconds, unless another
        node is; True if it is now (or already was) the describer."""
        key = f"pf:{swarm}:describer"
        if self.redis.set(key, node, nx=True, px=int(ttl_s * 1000)):
            return True
        return _bytes(self.redis.get(key)) == node.encode()

    def publish_description(self, swarm: str, data: bytes, *, ttl_s: float) -> bool:
        """Keep the first description for ``ttl_s`` seconds; False if one is already kept."""
        return bool(self.redis.set(f"pf:{swarm}:description", data, nx=True, px=int(ttl_s * 1000)))

    def description(self, swarm: str) -> bytes | None:
        return _bytes(self.redis.get(f"pf:{swarm}:description"))


# KEYS: swarms set, order zset, seq counter, node key, settling flag
# ARGV: swarm, node, seq the agent sent (-1: new), node JSON, TTL in ms
# Returns {seq, settling}. A member resending a seq the order does not hold means the
# state was lost: the settling flag then stands for one member TTL, the time in which
# every live member beats again.
#
# A new member's seq is the server clock in microseconds (or one past the last seq, if
# that is higher), not a plain counter: after Redis loses its state the members resend
# their old seqs, and a counter restarting at 1 gave a node joining then the seq of an
# old member, so the tie moved the chain's head and the origin served pieces twice.
# A resent seq raises the floor too, so later joins always sort after it. (Microseconds
# since 1970 stay below 2^53: exact in Lua numbers and zset scores.)
_JOIN = """
local seq = tonumber(ARGV[3])
local last = tonumber(redis.call('GET', KEYS[3]) or 0)
if seq >= 0 and not redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  redis.call('SET', KEYS[5], '1', 'PX', ARGV[5], 'NX')
end
if seq < 0 then
  seq = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[2]) or -1)
end
if seq < 0 then
  local now = redis.call('TIME')
  seq = math.max(tonumber(now[1]) * 1000000 + tonumber(now[2]), last + 1)
end
if seq > last then
  redis.call('SET', KEYS[3], string.format('%.0f', seq))
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], seq, ARGV[2])
redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[5])
return {seq, redis.call('EXISTS', KEYS[5])}
"""


def _bytes(value: Any) -> bytes | None:
    return value if value is None or isinstance(value, bytes) else str(value).encode()


def _text(value: Any) -> str:
    """redis-py types replies loosely (bytes or str); this client gets bytes."""
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)
