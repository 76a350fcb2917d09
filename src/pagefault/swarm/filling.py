"""One model's torrent on this node, once built, and everything that moves pieces into it.

Paths to completion, all through the same libtorrent torrent so local readers see one
layout: from the upstream peers the coordinator assigned (one per stripe); from the origin
for a stripe whose tree this node roots (a designated fetcher, paced by
:mod:`pagefault.swarm.pacing`); from the origin when an upstream's pieces stop arriving
or there is no coordinator (never slower than direct; the reason is kept in ``reasons``).
Every finished piece is read back, checked and cached by :mod:`pagefault.swarm.admission`
before the ledger (what readers wait on) counts it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import libtorrent as lt

from pagefault.cache import NodeCache
from pagefault.manifest import PieceManifest
from pagefault.sources import Source
from pagefault.swarm.admission import PieceAdmission
from pagefault.swarm.coordinator_client import CoordinatorClient
from pagefault.swarm.feeder import OriginFeeder
from pagefault.swarm.jsonhttp import split_address
from pagefault.swarm.ledger import PieceLedger
from pagefault.swarm.messages import Beat, Peer
from pagefault.swarm.pacing import FetchGate
from pagefault.swarm.stall import StallPolicy
from pagefault.swarm.striped import StripedTorrent

__all__ = ["Filling"]

_log = logging.getLogger("pagefault.agent")
# After an upstream link drops, how long a node leaves the upstream to dial it back (the
# upstream's own dial cut the link, and once a handshake is done it knows this node's
# address) before dialing it itself.
REDIAL_AFTER_S = 0.1


class Filling:
    """Fill ``torrent`` (built from ``manifest``, saving into ``save_path``) from peers and
    the origin (``origin(name)`` opens a file there), admitting pieces into ``cache`` and
    ``ledger``.

    The job's thread calls ``follow`` and ``check_stall`` once a heartbeat; the agent's
    alert loop calls ``piece_finished``, ``piece_read``, ``peer_banned`` and, when
    libtorrent has checked the files, ``admit_held``."""

    def __init__(
        self,
        torrent: StripedTorrent,
        manifest: PieceManifest,
        save_path: Path,
        *,
        origin: Callable[[str], Source],
        ledger: PieceLedger,
        coordinator: CoordinatorClient,
        cache: NodeCache | None,
        stall_s: float,
        origin_threads: int,
        link_mbit: float,
        stop: threading.Event,
        reasons: list[str],
    ) -> None:
        self.torrent = torrent
        self.layout = torrent.layout
        self.ledger = ledger
        self.coordinator = coordinator
        self.reasons = reasons  # shared with the job: what did not go the usual way
        self.upstreams: list[Peer | None] = []  # per stripe; None: the origin
        self.stall = StallPolicy(stall_s)
        self.admission = PieceAdmission(
            self.layout,
            manifest,
            save_path,
            cache=cache,
            on_admitted=self._admitted,
            on_corrupt=self._corrupt,
        )
        for piece in self.layout.header_pieces:  # every loader waits on these first
            torrent.set_piece_deadline(piece, 0)
        urgent = frozenset(self.layout.header_pieces)
        self.gate = FetchGate(torrent, stop, urgent, link_mbit=link_mbit)
        self.feeder = OriginFeeder(torrent, manifest, origin, threads=origin_threads, stop=stop)
        ledger.expect(self.layout.num_pieces)

    @property
    def swarm(self) -> str:
        return self.coordinator.swarm

    def close(self) -> None:
        self.admission.close()

    # -- from the agent's alert loop -----------------------------------------------------
    def piece_finished(self, piece: int) -> None:
        """libtorrent verified a piece: read it back through libtorrent to admit it."""
        self.torrent.read_piece(piece)

    def admit_held(self) -> None:
        """Admit what libtorrent found already on disk when it checked the files (an agent
        restarted over its data dir): it finishes those pieces without a "piece finished"
        alert, and unadmitted they would never be counted, so readers would wait forever.
        Called once the job holds this filling and again when the check ends."""
        for piece in self.torrent.held_pieces():
            if not self.ledger.has(piece):
                self.torrent.read_piece(piece)

    def piece_read(self, piece: int, data: bytes, error: str | None) -> None:
        """libtorrent read a finished piece back: check it, cache it, then report it had."""
        if error:
            self._corrupt(piece, f"reading it back failed: {error}")
        else:
            self.admission.submit(piece, data)

    def peer_banned(self, ip: str, why: str) -> None:
        """A peer sent pieces that failed their hash: have the coordinator drop it."""
        _log.warning("swarm %s: banned peer %s (%s)", self.swarm, ip, why)
        self.reasons.append(f"banned peer {ip}: {why}")
        for up in self.upstreams:
            if up and split_address(up.address)[0] == ip:
                self.coordinator.report(up.node, why)

    def peer_disconnected(
        self, handle: lt.torrent_handle, address: tuple[str, int], why: str
    ) -> None:
        """A link of this model's torrents closed: if it was the link to an upstream the
        coordinator placed, dial it again shortly (``StripedTorrent.redial``; first
        giving the upstream the moment to dial this node back itself)."""
        stripe = self.torrent.stripe_of(handle)
        if stripe is None or stripe >= len(self.upstreams) or self.ledger.complete:
            return
        up = self.upstreams[stripe]
        if up and split_address(up.address) == address:
            timer = threading.Timer(REDIAL_AFTER_S, self._redial, (stripe, address, up, why))
            timer.daemon = True
            timer.start()

    def _redial(self, stripe: int, address: tuple[str, int], up: Peer, why: str) -> None:
        if not self.ledger.complete and self.torrent.redial(stripe, address):
            _log.info(
                "swarm %s: link to upstream %s closed (%s); dialed again", self.swarm, up.node, why
            )

    def _admitted(self, piece: int) -> None:
        self.ledger.add(piece, waited=self.stall.progressed())

    def _corrupt(self, piece: int, why: str) -> None:
        """A finished piece's bytes on disk are not the manifest's: never report it had;
        fetch it again from the origin over the bad copy."""
        _log.error("swarm %s: piece %d not admitted: %s", self.swarm, piece, why)
        self.reasons.append(f"piece {piece} not admitted ({why}); fetched again from the origin")
        self.feeder.replace(piece)

    # -- from the job's thread, once a heartbeat -----------------------------------------
    def fetch_directly(self, why: str) -> None:
        """No swarm for this node: read every piece from the origin."""
        self.reasons.append(why)
        self.feeder.start(why)

    def follow(self, beat: Beat) -> None:
        """Connect to the upstreams the coordinator placed; read the stripes it says to."""
        if beat.settling:  # the coordinator is rebuilding its state: keep ours
            return
        stripes = beat.stripes
        if stripes != self.torrent.stripes:  # --stripes changed since our certificate
            joined = self.torrent.stripes
            why = f"origin fallback: joined as {joined} stripe(s), the swarm has {stripes}"
            if not self.ledger.complete and self.feeder.start(why):
                self.reasons.append(why)
            return
        upstreams = beat.upstreams
        for stripe, up in enumerate(upstreams):
            if up:  # every beat: a no-op while connected, a retry after a drop
                self.torrent.connect_peer(stripe, split_address(up.address))
        feeders = [up and up.node for up in upstreams]
        if feeders != [up and up.node for up in self.upstreams]:
            _log.info("swarm %s: fed by %s", self.swarm, feeders)
        self.upstreams = upstreams
        # A placement can be transient (e.g. the first heartbeat after Redis lost its state
        # sees a fleet of one): fetch a stripe only while the coordinator keeps saying so.
        fetch = frozenset(beat.fetch)
        self.gate.update(fetch, beat.size)
        if fetch and not self.ledger.complete and not self.feeder.running:
            self.feeder.start(
                f"designated fetcher of stripe(s) {sorted(fetch)} of {stripes}",
                wanted=self.gate.allows,
            )

    def check_stall(self, coordinated: bool) -> None:
        """Ask the stall policy; when it says so, fetch the missing pieces from the origin.
        ``coordinated``: a coordinator answered this heartbeat."""
        if self.feeder.running:
            return
        why = self.stall.stalled(
            missing=self.layout.num_pieces - self.ledger.count,
            due=self._pieces_due(),
            coordinated=coordinated,
        )
        if why is None:
            return
        if not coordinated and self.coordinator.error is not None:
            why = f"coordinator unavailable: {self.coordinator.error}"
        else:
            why = f"swarm stalled ({why})"
            _log.warning("swarm %s stalled: %s", self.swarm, self._stall_report())
        if self.feeder.start(why):
            self.reasons.append(f"origin fallback: {why}")
            self.stall.restart()

    def _pieces_due(self) -> bool:
        """Pieces should be arriving: an upstream holds pieces this node lacks, or this node
        reads a stripe from the origin itself. Otherwise a stall is not this node's to act
        on (without this, the tail of a long chain whose head just died would time out and
        pull the whole model from the origin while the new head is already refilling).

        A fetcher stalls too: its reads hold off a piece a connected peer has, and a
        peer that has it but never sends it held one forever (a corrupt node, banned,
        dialing in again: both nodes behind it timed out at 24 of 25 pieces)."""
        have = self.ledger.count
        return bool(self.gate.fetch) or any(up and up.have > have for up in self.upstreams)

    def _stall_report(self) -> str:
        """What the swarm looks like when it stops delivering: for the log, to debug it."""
        missing = self.ledger.missing()
        missing_lt = [p for p in missing if not self.torrent.have_piece(p)]
        stripes = "; ".join(self.torrent.report())
        return (
            f"missing {len(missing)} pieces {missing[:8]} (libtorrent: {missing_lt[:8]}); {stripes}"
        )
