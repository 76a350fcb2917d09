"""One model's calls to the coordinator, from its node: heartbeats, the shared manifest,
reports of bad peers.

A coordinator that does not answer is an outage, not an error: every call returns None,
the job carries on without it (the stall policy takes the origin when nobody else will),
and the outage's cause is kept (``error``) so the agent says *why* it fell back.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from pagefault.errors import ControlError
from pagefault.manifest import PieceManifest
from pagefault.swarm.config import AgentConfig
from pagefault.swarm.jsonhttp import call
from pagefault.swarm.messages import (
    Beat,
    DescriberTurn,
    Heartbeat,
    M,
    Report,
    SharedDescription,
    read_message,
)

__all__ = ["CoordinatorClient"]

_log = logging.getLogger("pagefault.agent")
_CALL_TIMEOUT_S = 2.0  # a beat must not hold the job longer than its own period or so


class CoordinatorClient:
    """The coordinator as one swarm (``swarm``) on one node sees it."""

    def __init__(self, settings: AgentConfig, swarm: str, address: str) -> None:
        self.settings = settings
        self.swarm = swarm
        self.address = address  # this node's libtorrent listener, as peers reach it
        self.error: str | None = None  # the last failed call's, until one succeeds
        self._seq = -1  # this node's join order, as the coordinator last said

    @property
    def configured(self) -> bool:
        return bool(self.settings.coordinator)

    def heartbeat(self, stats: dict[str, Any]) -> Beat | None:
        """One beat; the coordinator's answer, or None when there is none to follow."""
        body = Heartbeat(
            address=self.address,
            seq=self._seq,
            zone=self.settings.zone,
            link_mbit=self.settings.link_mbit,
            stats=stats,
        )
        beat = self._message(Beat, f"nodes/{self.settings.node}", body.model_dump())
        if beat is not None:
            self._seq = beat.seq
        return beat

    def shared_manifest(self) -> PieceManifest | None:
        """The manifest a first fetcher published for this swarm, if any yet."""
        shared = self._call("manifest", method="GET", quiet=True)
        if not isinstance(shared, dict) or "manifest" not in shared:
            return None
        data = base64.b64decode(shared["manifest"])
        return PieceManifest.from_json(data, name=f"swarm {self.swarm} manifest")

    def describer_turn(self) -> DescriberTurn | None:
        """The model's shared description, or whether this node is to describe it; None
        when the coordinator does not answer (describe the origin, then)."""
        return self._message(DescriberTurn, f"describers/{self.settings.node}")

    def share_description(self, description: SharedDescription) -> None:
        """Share what this node's describe found, so the fleet need not ask the origin."""
        self._call("description", description.model_dump(), method="PUT")

    def publish(self, manifest: PieceManifest) -> None:
        """Share the manifest this node built, so no other node hashes the model again."""
        self._call("manifest", manifest.to_json(), method="PUT")

    def report(self, node: str, why: str) -> None:
        """Ask the coordinator to drop ``node`` from the placement (it sent bad pieces)."""
        self._call(f"reports/{node}", Report(reason=why, reporter=self.settings.node).model_dump())

    def _message(self, kind: type[M], path: str, body: dict[str, Any] | None = None) -> M | None:
        """A POST whose answer is a ``kind``; None when there is no usable answer (an
        unreadable one is an outage too, its cause kept)."""
        answer = self._call(path, body, quiet=True)
        if answer is None:
            return None
        try:
            return read_message(kind, answer, sender=str(self.settings.coordinator))
        except ControlError as exc:
            self._unavailable(exc, quiet=True)
            return None

    def _call(
        self,
        path: str,
        body: dict[str, Any] | bytes | None = None,
        *,
        method: str = "POST",
        quiet: bool = False,
    ) -> Any:
        """A call under ``/v1/swarms/<swarm>/``; None (logged) when the coordinator is down."""
        if not self.settings.coordinator:
            return None
        try:
            answer = call(
                f"{self.settings.coordinator}/v1/swarms/{self.swarm}/{path}",
                method=method,
                body=body,
                token=self.settings.token,
                timeout=_CALL_TIMEOUT_S,
            )
        except ControlError as exc:
            if exc.status == 404:  # an answer (no such manifest yet), not an outage
                self._reachable()
            else:
                self._unavailable(exc, quiet=quiet)
            return None
        self._reachable()
        return answer

    def _unavailable(self, exc: ControlError, *, quiet: bool) -> None:
        if self.error is None:  # once per outage, with its cause
            _log.warning("swarm %s: coordinator unavailable: %s", self.swarm, exc)
        elif not quiet:
            _log.warning("coordinator: %s", exc)
        self.error = str(exc)

    def _reachable(self) -> None:
        """The coordinator answered: an outage, if there was one, is over."""
        if self.error is not None:
            _log.info("swarm %s: coordinator reachable again", self.swarm)
            self.error = None
