"""``pagefault coordinator``: peer discovery, stripe-tree placement and origin policy over HTTP.

Stateless: everything lives in Redis (:mod:`pagefault.swarm.state`), so several replicas can
serve one fleet and a restart loses nothing that heartbeats do not rebuild. Every route
but ``GET /v1/health`` needs the swarm token; a node presenting it gets a certificate from
the swarm CA, which is what lets it talk to other nodes at all. A store that fails answers
503 naming its error, on every route and on the health check.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import math
from collections.abc import Iterator
from typing import Any

import redis

from pagefault.errors import ControlError
from pagefault.swarm.credentials import SwarmCA
from pagefault.swarm.jsonhttp import JsonServer, Request
from pagefault.swarm.state import SwarmState
from pagefault.swarm.topology import DEFAULT_STRIPES, Member, order, place

__all__ = ["HEALTH_PATH", "HEARTBEAT_S", "MEMBER_TTL_S", "Coordinator"]

HEALTH_PATH = "/v1/health"

HEARTBEAT_S = 0.5  # agents' heartbeat period
# A node is gone after 4 missed beats: 3 (1.5 s) dropped live nodes whose beat was late
# while 16 agents started on 2 CPUs, and the transient head fetched from the origin.
MEMBER_TTL_S = 4 * HEARTBEAT_S
_log = logging.getLogger("pagefault.coordinator")
_ID = r"([A-Za-z0-9._-]{1,128})"


class Coordinator:
    def __init__(
        self, state: SwarmState, ca: SwarmCA, token: str, *, stripes: int = DEFAULT_STRIPES
    ) -> None:
        self.state = state
        self.ca = ca
        self.token = token
        self.stripes = stripes

    def server(self, address: str) -> JsonServer:
        routes = [
            ("POST", r"/v1/credentials/" + _ID, self._credentials),
            ("POST", rf"/v1/swarms/{_ID}/nodes/{_ID}", self._heartbeat),
            ("POST", rf"/v1/swarms/{_ID}/reports/{_ID}", self._report),
            ("PUT", rf"/v1/swarms/{_ID}/manifest", self._put_manifest),
            ("GET", rf"/v1/swarms/{_ID}/manifest", self._get_manifest),
            ("GET", rf"/v1/swarms/{_ID}", self._status),
            ("GET", r"/v1/swarms", self._list),
            ("GET", HEALTH_PATH, self._health),
        ]
        return JsonServer(routes, address, self.token, public=frozenset({HEALTH_PATH}))

    def _health(self, request: Request) -> tuple[int, Any]:
        """200 when the coordination store answers; 503 with its error otherwise. Needs no
        token, so a Kubernetes probe or a load balancer can ask; it tells nothing else."""
        with _redis_errors():
            self.state.redis.ping()
        return 200, {"ok": True}

    def _credentials(self, request: Request) -> tuple[int, Any]:
        node = request.match.group(1)
        issued = self.ca.issue(node)
        _log.info("issued a certificate to %s", node)
        return 200, {
            "ca": self.ca.cert_pem.decode(),
            "cert": issued.cert_pem.decode(),
            "key": issued.key_pem.decode(),
            "stripes": self.stripes,  # a job's torrents need it before the node joins
        }

    def _heartbeat(self, request: Request) -> tuple[int, Any]:
        swarm, node = request.match.groups()
        body = request.json()
        address = body.get("address")
        if not isinstance(address, str) or ":" not in address:
            raise ControlError("'address' must be 'ip:port'", 400)
        try:
            link_mbit = float(body.get("link_mbit") or 0.0)
        except (TypeError, ValueError):
            link_mbit = math.nan
        if not (math.isfinite(link_mbit) and link_mbit >= 0):
            raise ControlError("'link_mbit' must be a non-negative number (Mbit/s)", 400)
        given = Member(
            node, address, int(body.get("seq", -1)), str(body.get("zone", "")), link_mbit
        )
        with _redis_errors():
            member, settling = self.state.heartbeat(swarm, given, dict(body.get("stats") or {}))
            if settling:  # Redis restarted: keep every placement until the fleet beat again
                return 200, {"seq": member.seq, "excluded": False, "settling": True}
            ranked = self.state.live(swarm)
            has_manifest = self.state.manifest(swarm) is not None
        live = [m for m, _ in ranked]
        have = {m.node: int(stats.get("have") or 0) for m, stats in ranked}
        if all(m.node != node for m in live):  # reported corrupt: nobody feeds from it
            return 200, {
                "seq": member.seq,
                "excluded": True,
                "stripes": self.stripes,
                "upstreams": [],
                "fetch": [],
            }
        placement = place(node, live, self.stripes)
        return 200, {
            "seq": member.seq,
            "excluded": False,
            "stripes": self.stripes,
            "upstreams": [_peer(up, have) for up in placement.upstreams],
            "fetch": placement.fetch,
            "position": placement.position,
            "size": placement.size,
            "manifest": has_manifest,
        }

    def _report(self, request: Request) -> tuple[int, Any]:
        swarm, bad = request.match.groups()
        reason = request.json().get("reason", "")
        _log.warning("swarm %s: node %s reported: %s", swarm, bad, reason)
        with _redis_errors():
            self.state.report_bad(swarm, bad)
        return 200, {"excluded": bad}

    def _put_manifest(self, request: Request) -> tuple[int, Any]:
        swarm = request.match.group(1)
        with _redis_errors():
            first = self.state.publish_manifest(swarm, request.body)
        return (201 if first else 200), {"published": first}

    def _get_manifest(self, request: Request) -> tuple[int, Any]:
        with _redis_errors():
            data = self.state.manifest(request.match.group(1))
        if data is None:
            raise ControlError("no manifest published for this swarm yet", 404)
        return 200, {"manifest": base64.b64encode(data).decode()}

    def _status(self, request: Request) -> tuple[int, Any]:
        swarm = request.match.group(1)
        with _redis_errors():
            live = self.state.live(swarm)
            bad = self.state.bad(swarm)
        members = [m for m, _ in live]
        stats = {member.node: node_stats for member, node_stats in live}
        nodes = []
        for member in order(members):
            placement = place(member.node, members, self.stripes)
            nodes.append(
                {
                    "node": member.node,
                    "address": member.address,
                    "zone": member.zone,
                    "position": placement.position,
                    "upstreams": [up.node if up else None for up in placement.upstreams],
                    **stats[member.node],
                }
            )
        return 200, {"swarm": swarm, "nodes": nodes, "bad": bad}

    def _list(self, request: Request) -> tuple[int, Any]:
        with _redis_errors():
            return 200, {"swarms": self.state.swarms()}


def _peer(member: Member | None, have: dict[str, int]) -> dict[str, Any] | None:
    """An upstream as its child sees it; ``have`` (its piece count at its last heartbeat)
    tells the child whether it is waiting on a slow chain or on a broken link."""
    if member is None:
        return None
    return {"node": member.node, "address": member.address, "have": have.get(member.node, 0)}


@contextlib.contextmanager
def _redis_errors() -> Iterator[None]:
    """Redis down or restarting: answer 503 so agents keep their current peers and retry."""
    try:
        yield
    except redis.RedisError as exc:
        raise ControlError(f"coordination store unavailable: {exc}", 503) from exc
