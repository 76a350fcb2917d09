"""``pagefault coordinator``: peer discovery, stripe-tree placement and origin policy over HTTP.

Stateless: everything lives in Redis (:mod:`pagefault.swarm.state`), so several replicas can
serve one fleet and a restart loses nothing that heartbeats do not rebuild. Every route
but ``GET /v1/health`` needs the swarm token; a node presenting it gets a certificate from
the swarm CA, which is what lets it talk to other nodes at all. A store that fails answers
503 naming its error, on every route and on the health check.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import redis

from pagefault.errors import ControlError
from pagefault.swarm.credentials import SwarmCA
from pagefault.swarm.messages import (
    Beat,
    Credentials,
    DescriberTurn,
    Heartbeat,
    Peer,
    Report,
    SharedDescription,
    SwarmStatus,
)
from pagefault.swarm.protocol import MEMBER_TTL_S
from pagefault.swarm.state import SwarmState
from pagefault.swarm.topology import DEFAULT_STRIPES, Member, order, place

__all__ = ["Coordinator"]

_log = logging.getLogger("pagefault.coordinator")
# A fleet starting at once describes the origin once: one node describes, the rest wait
# for what it shares. Its claim lapses (and another node describes) if it has not shared
# within DESCRIBER_S; a shared description is kept for DESCRIPTION_S, so nodes joining
# later describe the origin again and a model replaced there is not shared stale for long.
DESCRIBER_S = 5.0
DESCRIPTION_S = 60.0

if TYPE_CHECKING:
    from pagefault.swarm.server import ApiServer


class Coordinator:
    """The control plane's logic over typed messages; :meth:`server` puts it on HTTP."""

    def __init__(
        self, state: SwarmState, ca: SwarmCA, token: str, *, stripes: int = DEFAULT_STRIPES
    ) -> None:
        self.state = state
        self.ca = ca
        self.token = token
        self.stripes = stripes
        self._store_failing = False
        self._store_back_at = -MEMBER_TTL_S  # when the store answered again after failing

    def server(self, address: str) -> ApiServer:
        """Its HTTP API on ``address`` (not yet started)."""
        from pagefault.swarm.routes import coordinator_server  # noqa: PLC0415 - FastAPI

        return coordinator_server(self, address)

    def health(self) -> None:
        """Raises (503, naming the store's error) unless the coordination store answers."""
        with self._store():
            self.state.redis.ping()

    def credentials(self, node: str) -> Credentials:
        issued = self.ca.issue(node)
        _log.info("issued a certificate to %s", node)
        return Credentials(
            ca=self.ca.cert_pem.decode(),
            cert=issued.cert_pem.decode(),
            key=issued.key_pem.decode(),
            stripes=self.stripes,  # a job's torrents need it before the node joins
        )

    def heartbeat(self, swarm: str, node: str, beat: Heartbeat) -> Beat:
        """Record ``node`` as live and answer with its place in the swarm."""
        given = Member(node, beat.address, beat.seq, beat.zone, beat.link_mbit)
        with self._store():
            member, settling = self.state.heartbeat(swarm, given, beat.stats)
        if settling or self._recovering():  # keep every placement until all beat again
            return Beat(seq=member.seq, settling=True)
        with self._store():
            ranked = self.state.live(swarm)
            has_manifest = self.state.has_manifest(swarm)
        live = [m for m, _ in ranked]
        have = {m.node: int(stats.get("have") or 0) for m, stats in ranked}
        if all(m.node != node for m in live):  # reported corrupt: nobody feeds from it
            return Beat(seq=member.seq, excluded=True, stripes=self.stripes)
        placement = place(node, live, self.stripes)
        return Beat(
            seq=member.seq,
            stripes=self.stripes,
            upstreams=[_peer(up, have) for up in placement.upstreams],
            fetch=placement.fetch,
            position=placement.position,
            size=placement.size,
            manifest=has_manifest,
        )

    def report(self, swarm: str, bad: str, report: Report) -> None:
        by = report.reporter or "a node"
        _log.warning("swarm %s: node %s reported by %s: %s", swarm, bad, by, report.reason)
        with self._store():
            self.state.report_bad(swarm, bad)

    def publish_manifest(self, swarm: str, data: bytes) -> bool:
        """Keep the first fetcher's manifest; False if one was already published."""
        with self._store():
            return self.state.publish_manifest(swarm, data)

    def manifest(self, swarm: str) -> bytes:
        with self._store():
            data = self.state.manifest(swarm)
        if data is None:
            raise ControlError("no manifest published for this swarm yet", 404)
        return data

    def describer(self, swarm: str, node: str) -> DescriberTurn:
        """The model's shared description, or whether ``node`` is the one to describe it."""
        with self._store():
            data = self.state.description(swarm)
            if data is None:
                return DescriberTurn(
                    describe=self.state.claim_describer(swarm, node, ttl_s=DESCRIBER_S)
                )
        return DescriberTurn(description=SharedDescription.model_validate_json(data))

    def share_description(self, swarm: str, description: SharedDescription) -> bool:
        """Keep the first description shared for ``swarm``; False if one is kept already."""
        data = description.model_dump_json().encode()
        with self._store():
            return self.state.publish_description(swarm, data, ttl_s=DESCRIPTION_S)

    def status(self, swarm: str) -> SwarmStatus:
        with self._store():
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
        return SwarmStatus(swarm=swarm, nodes=nodes, bad=bad)

    def swarms(self) -> list[str]:
        with self._store():
            return self.state.swarms()

    @contextlib.contextmanager
    def _store(self) -> Iterator[None]:
        """A store call: 503 naming its error when Redis is down or restarting (agents keep
        their peers and retry), and a note of when it answers again after failing."""
        try:
            yield
        except redis.RedisError as exc:
            self._store_failing = True
            raise ControlError(f"coordination store unavailable: {exc}", 503) from exc
        if self._store_failing:
            self._store_failing = False
            self._store_back_at = time.monotonic()

    def _recovering(self) -> bool:
        """Within one member TTL of the store answering again after this coordinator saw it
        fail. Redis may have lost the swarm, and a node whose first beat is the first one
        back has no seq to resend, so the store cannot tell (``state._JOIN`` catches
        resends): that node would be placed alone and fetch beside the old head."""
        return time.monotonic() - self._store_back_at < MEMBER_TTL_S


def _peer(member: Member | None, have: dict[str, int]) -> Peer | None:
    if member is None:
        return None
    return Peer(node=member.node, address=member.address, have=have.get(member.node, 0))
