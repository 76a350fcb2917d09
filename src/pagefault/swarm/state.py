"""The coordinator's state in Redis, so coordinators are stateless and can run as replicas.

Keys (``{s}`` is the swarm id): ``pf:swarms`` (set of ids), ``pf:{s}:order`` (zset
node -> join seq), ``pf:{s}:seq`` (counter), ``pf:{s}:node:{n}`` (JSON, expires: the
heartbeat), ``pf:{s}:bad`` (nodes reported for corrupt pieces), ``pf:{s}:manifest``
(the piece manifest a first fetcher built). Everything is rebuilt from heartbeats when
Redis loses it: agents resend their seq.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import redis

from pagefault.swarm.topology import Member

__all__ = ["SwarmState"]


class SwarmState:
    def __init__(self, client: redis.Redis, *, ttl_s: float) -> None:
        self.redis = client
        self.ttl_ms = int(ttl_s * 1000)

    def heartbeat(self, swarm: str, member: Member, stats: dict[str, Any]) -> Member:
        """Record a live member; assign its seq on first sight (or keep the one it sends)."""
        order = f"pf:{swarm}:order"
        seq = member.seq
        if seq < 0:
            current = self.redis.zscore(order, member.node)
            seq = int(current) if current is not None else int(self.redis.incr(f"pf:{swarm}:seq"))
        member = Member(member.node, member.address, seq, member.zone)
        body = json.dumps({"member": asdict(member), "stats": stats})
        with self.redis.pipeline() as pipe:
            pipe.sadd("pf:swarms", swarm)
            pipe.zadd(order, {member.node: seq})
            pipe.set(f"pf:{swarm}:node:{member.node}", body, px=self.ttl_ms)
            pipe.execute()
        return member

    def live(self, swarm: str) -> list[tuple[Member, dict[str, Any]]]:
        """Members whose heartbeat has not lapsed, minus those reported corrupt."""
        nodes = [_text(n) for n in self.redis.zrange(f"pf:{swarm}:order", 0, -1)]
        bad = set(self.bad(swarm))
        bodies = self.redis.mget([f"pf:{swarm}:node:{n}" for n in nodes]) if nodes else []
        out = []
        for node, body in zip(nodes, bodies, strict=True):
            if body is None or node in bad:
                continue
            data = json.loads(body)
            out.append((Member(**data["member"]), data["stats"]))
        return out

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


def _text(value: Any) -> str:
    """redis-py types replies loosely (bytes or str); this client gets bytes."""
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)
