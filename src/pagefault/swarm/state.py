"""The coordinator's state in Redis, so coordinators are stateless and can run as replicas.

Keys (``{s}`` is the swarm id): ``pf:swarms`` (set of ids), ``pf:{s}:order`` (zset
node -> join seq), ``pf:{s}:seq`` (counter), ``pf:{s}:node:{n}`` (address, zone and
stats as JSON; expires: the heartbeat), ``pf:{s}:bad`` (nodes reported for corrupt
pieces), ``pf:{s}:manifest`` (the piece manifest a first fetcher built). Everything is
rebuilt from heartbeats when Redis loses it: agents resend their seq.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import redis

from pagefault.swarm.topology import Member

__all__ = ["SwarmState"]


class SwarmState:
    def __init__(self, client: redis.Redis, *, ttl_s: float) -> None:
        self.redis = client
        self.ttl_ms = int(ttl_s * 1000)
        self._join = client.register_script(_JOIN)

    def heartbeat(self, swarm: str, member: Member, stats: dict[str, Any]) -> Member:
        """Record a live member; assign its seq on first sight (or keep the one it sends).

        One script, so a seq is never handed out before its member is visible: two nodes
        joining at once could otherwise each see only itself and both fetch from the origin.
        """
        body = json.dumps({"address": member.address, "zone": member.zone, "stats": stats})
        keys = [
            "pf:swarms",
            f"pf:{swarm}:order",
            f"pf:{swarm}:seq",
            self._node_key(swarm, member.node),
        ]
        seq = self._join(keys=keys, args=[swarm, member.node, member.seq, body, self.ttl_ms])
        return dataclasses.replace(member, seq=int(seq))

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
            out.append((Member(node, data["address"], seq, data["zone"]), data["stats"]))
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
        data = self.redis.get(f"pf:{swarm}:manifest")
        return data if data is None or isinstance(data, bytes) else str(data).encode()


# KEYS: swarms set, order zset, seq counter, node key
# ARGV: swarm, node, seq the agent sent (-1: new), node JSON, TTL in ms
_JOIN = """
local seq = tonumber(ARGV[3])
if seq < 0 then
  seq = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[2]) or redis.call('INCR', KEYS[3]))
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], seq, ARGV[2])
redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[5])
return seq
"""


def _text(value: Any) -> str:
    """redis-py types replies loosely (bytes or str); this client gets bytes."""
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)
