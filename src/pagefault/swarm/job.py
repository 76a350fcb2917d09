"""One model on one node: join its swarm, keep the tree placement fresh, fill every piece.

Paths to completion, all through the same libtorrent torrent so local readers see one
layout: from the upstream peers the coordinator assigned (one per stripe); from the origin
for a stripe whose tree this node roots (a designated fetcher, paced by
:mod:`pagefault.swarm.pacing`); from the origin when an upstream's pieces stop arriving
or there is no coordinator (never slower than direct; the reason is logged and reported
in ``reasons``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libtorrent as lt

from pagefault.cache import NodeCache, remember
from pagefault.errors import ControlError, PagefaultError, SwarmError
from pagefault.manifest import PieceManifest
from pagefault.pieces import make_piece_manifest, pull
from pagefault.sources import LocalFileSource, Source
from pagefault.sources.describe import ModelDescription, describe
from pagefault.sources.remote_dir import RemoteDirectory
from pagefault.swarm.admission import PieceAdmission
from pagefault.swarm.config import AgentConfig
from pagefault.swarm.credentials import NodeCredentials, SwarmCA
from pagefault.swarm.feeder import OriginFeeder
from pagefault.swarm.jsonhttp import call, split_address
from pagefault.swarm.messages import (
    Beat,
    Heartbeat,
    ModelFile,
    ModelStatus,
    Peer,
    Report,
    read_message,
)
from pagefault.swarm.metrics import WaitHistogram
from pagefault.swarm.pacing import FetchGate
from pagefault.swarm.protocol import HEARTBEAT_S
from pagefault.swarm.stall import StallPolicy
from pagefault.swarm.striped import StripedTorrent
from pagefault.swarm.torrent import TorrentLayout

__all__ = ["ModelJob", "swarm_id"]

_log = logging.getLogger("pagefault.agent")
BUILT_PIECE_SIZE = 1 << 20  # a manifest hashed on the fly: small pieces keep tree hops short


def swarm_id(uri: str) -> str:
    """Every node asking for the same URI joins the same swarm."""
    return hashlib.sha256(uri.encode()).hexdigest()[:24]


class ModelJob:
    """One model on this node, from the first request until the agent stops.

    Its thread obtains the manifest (the origin's, a first fetcher's via the coordinator,
    or built), adds the torrent, then once a heartbeat follows the placement and asks the
    stall policy whether to read the origin. libtorrent's alerts arrive through
    ``piece_finished``/``piece_read`` (pieces are admitted off that thread); readers block
    in ``wait``. ``_changed`` guards the set of admitted pieces and the state.
    """

    def __init__(
        self,
        uri: str,
        session: lt.session,
        settings: AgentConfig,
        address: str,
        credentials: tuple[bytes, NodeCredentials] | None,
        *,
        cache: NodeCache | None = None,
        solo_reason: str = "no coordinator configured",
        stripes: int = 1,
    ) -> None:
        self.uri = uri
        self.cache = cache  # where admitted pieces go, for every process on the node
        self.id = swarm_id(uri)
        self.session = session
        self.settings = settings
        self.address = address  # this node's libtorrent listener, as peers reach it
        self.credentials = credentials  # (CA PEM, this node's certificate); None: no swarm
        self.solo_reason = solo_reason  # why there is no swarm, when there is none
        self.stripes = stripes  # torrents per model, as the coordinator places them
        self.save_path = settings.data_dir / self.id
        self.state = "starting"
        self.reasons: list[str] = []
        self.error: str | None = None
        self.coordinator_error: str | None = None  # the last failed call's, until one succeeds
        self.started = time.monotonic()
        self.first_piece_s: float | None = None
        self.complete_s: float | None = None
        self.layout: TorrentLayout | None = None
        self.torrent: StripedTorrent | None = None
        self.feeder: OriginFeeder | None = None
        self.admission: PieceAdmission | None = None
        self._release_lease: Callable[[], None] = lambda: None
        self.upstreams: list[Peer | None] = []  # per stripe; None: the origin
        self.gate: FetchGate | None = None  # what this node may read as a fetcher
        self._seq = -1
        self._staging: Path | None = None  # a first fetcher's full download, until complete
        self._have: set[int] = set()
        self.piece_waits = WaitHistogram()  # seconds from one verified piece to the next
        self._changed = threading.Condition()
        self.stall = StallPolicy(settings.stall_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job-{self.id}", daemon=True)

    def start(self) -> ModelJob:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.admission is not None:
            self.admission.close()
        self._release_lease()

    # -- called from the agent's alert loop ---------------------------------------------
    def piece_finished(self, piece: int) -> None:
        """libtorrent verified a piece: read it back through libtorrent to admit it."""
        if self.torrent is not None:
            self.torrent.read_piece(piece)

    def piece_read(self, piece: int, data: bytes, error: str | None) -> None:
        """libtorrent read a finished piece back: check it, cache it, then report it had."""
        if error:
            self._corrupt(piece, f"reading it back failed: {error}")
        elif self.admission is not None:
            self.admission.submit(piece, data)

    def _admitted(self, piece: int) -> None:
        with self._changed:
            self._have.add(piece)
            now = time.monotonic()
            self.piece_waits.observe(self.stall.progressed())
            if self.first_piece_s is None:
                self.first_piece_s = now - self.started
            if self.layout and len(self._have) == self.layout.num_pieces:
                self.complete_s = now - self.started
                self.state = "complete"
            self._changed.notify_all()

    def _corrupt(self, piece: int, why: str) -> None:
        """A finished piece's bytes on disk are not the manifest's: never report it had;
        fetch it again from the origin over the bad copy."""
        _log.error("swarm %s: piece %d not admitted: %s", self.id, piece, why)
        self.reasons.append(f"piece {piece} not admitted ({why}); fetched again from the origin")
        if self.feeder is not None:
            self.feeder.replace(piece)

    def peer_banned(self, ip: str, why: str) -> None:
        """A peer sent pieces that failed their hash: have the coordinator drop it."""
        _log.warning("swarm %s: banned peer %s (%s)", self.id, ip, why)
        self.reasons.append(f"banned peer {ip}: {why}")
        for up in self.upstreams:
            if up and split_address(up.address)[0] == ip:
                self._control(
                    f"/v1/swarms/{self.id}/reports/{up.node}",
                    Report(reason=why, reporter=self.settings.node).model_dump(),
                )

    # -- readers -----------------------------------------------------------------------
    def wait(self, first: int, last: int, timeout: float) -> bool:
        """Block until pieces ``first..last`` (inclusive) are here, or the job failed."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not all(p in self._have for p in range(first, last + 1)):
                left = deadline - time.monotonic()
                if left <= 0 or self.error:
                    return False
                self._changed.wait(left)
        return True

    def contiguous(self, first: int) -> int:
        """How many pieces from ``first`` on are here without a gap: a reader need not ask
        again for any of them."""
        with self._changed:
            count = 0
            while first + count in self._have:
                count += 1
            return count

    def stats(self) -> dict[str, Any]:
        """Progress and byte counts: what the heartbeat reports to the coordinator."""
        from_peers, uploaded = self.torrent.payload_totals() if self.torrent else (0, 0)
        return {
            "state": self.state,
            "pieces": self.layout.num_pieces if self.layout else None,
            "have": len(self._have),
            "from_origin": self.feeder.bytes if self.feeder else 0,
            "from_peers": from_peers,
            "uploaded": uploaded,
            "first_piece_s": self.first_piece_s,
            "complete_s": self.complete_s,
        }

    def describe(self) -> ModelStatus:
        """Everything a local reader needs: the stats, where each file lies, what went wrong."""
        layout = self.layout
        return ModelStatus(
            **self.stats(),
            id=self.id,
            uri=self.uri,
            error=self.error,
            coordinator_error=self.coordinator_error,
            reasons=list(self.reasons),
            save_path=str(self.save_path),
            cache_dir=self._cache_dir(),
            piece_size=layout.piece_size if layout else None,
            files=[
                ModelFile(
                    name=f.name,
                    size=f.size,
                    first_piece=f.first_piece,
                    pieces=f.pieces,
                    path=str(f.path(self.save_path)),
                )
                for f in (layout.files if layout else ())
            ],
            upstreams=[up.address if up else None for up in self.upstreams],
        )

    # -- the job -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            directory, _ = RemoteDirectory.split(self.uri)
            description = self._describe()
            manifest = self._manifest(description)
            self._add_torrent(manifest, directory, description)
            self._follow()
        except Exception as exc:
            _log.exception("swarm %s failed", self.id)
            with self._changed:
                self.error, self.state = f"{type(exc).__name__}: {exc}", "failed"
                self._changed.notify_all()

    def _describe(self) -> ModelDescription | None:
        """The model as the origin serves it (files, versions, index, published manifest):
        asked once, for the swarm's manifest and the node cache's record. None when the
        origin cannot say: the coordinator may still have a first fetcher's manifest."""
        try:
            return describe(self.uri)
        except PagefaultError as exc:
            self.reasons.append(f"cannot describe {self.uri} at the origin: {exc}")
            return None

    def _manifest(self, description: ModelDescription | None) -> PieceManifest:
        """The origin's published manifest, or the one a first fetcher published, or build it."""
        published = description.pieces if description is not None else None
        if published is not None and all(f.roots or not f.size for f in published.files):
            return published
        while not self._stop.is_set():
            shared = self._control(f"/v1/swarms/{self.id}/manifest", method="GET", quiet=True)
            if isinstance(shared, dict) and "manifest" in shared:
                data = base64.b64decode(shared["manifest"])
                return PieceManifest.from_json(data, name=f"swarm {self.id} manifest")
            beat = self._heartbeat({})
            if beat is None or 0 in beat.fetch:  # the first stripe's root builds it
                return self._build_manifest()
            self._stop.wait(HEARTBEAT_S)
        raise SwarmError("stopped before the model's manifest was available")

    def _build_manifest(self) -> PieceManifest:
        """First fetcher, no usable published manifest: download once, hash, publish."""
        self.reasons.append("no published manifest with v2 roots: built it from the origin")
        staging = self.settings.data_dir / f"{self.id}.staging"
        pull(self.uri, staging)
        manifest = make_piece_manifest(staging, piece_size=BUILT_PIECE_SIZE)
        self._staging = staging
        self._control(f"/v1/swarms/{self.id}/manifest", manifest.to_json(), method="PUT")
        return manifest

    def _add_torrent(
        self,
        manifest: PieceManifest,
        directory: RemoteDirectory,
        description: ModelDescription | None,
    ) -> None:
        ca, node = self.credentials or (SwarmCA.create().cert_pem, None)
        torrent = StripedTorrent.add(
            self.session, manifest, ca, self.save_path, stripes=self.stripes, node=node
        )
        self.torrent, self.layout = torrent, torrent.layout
        self.admission = PieceAdmission(
            self.layout,
            manifest,
            self.save_path,
            on_admitted=self._admitted,
            on_corrupt=self._corrupt,
        )
        self.admission.cache = self._node_cache_for(manifest, description)
        for piece in self.layout.header_pieces:  # every loader waits on these first
            torrent.set_piece_deadline(piece, 0)
        urgent = frozenset(self.layout.header_pieces)
        self.gate = FetchGate(torrent, self._stop, urgent)
        self.feeder = OriginFeeder(
            torrent,
            manifest,
            self._origin(directory),
            threads=self.settings.origin_threads,
        )
        self.state = "swarming"

    def _cache_dir(self) -> str | None:
        """Where admitted pieces go, when they go into the node cache."""
        cache = self.admission.cache if self.admission is not None else None
        return str(cache.config.disk_dir) if cache is not None else None

    def _node_cache_for(
        self, manifest: PieceManifest, description: ModelDescription | None
    ) -> NodeCache | None:
        """Record the model in the node cache (so ``load(uri)`` finds it) and hold a lease on
        its files while seeding; None when admitted pieces cannot go there."""
        if self.cache is None or description is None:
            return None
        try:
            learned = manifest if description.pieces is None else None
            record = remember(description, self.cache, learned=learned)
        except PagefaultError as exc:
            self.reasons.append(f"not in the node cache: {exc}")
            return None
        if record.piece_size != manifest.piece_size:
            why = f"its pieces are {record.piece_size} bytes, the swarm's {manifest.piece_size}"
            self.reasons.append(f"not in the node cache: {why}")
            return None
        self._release_lease = self.cache.lease(f.key for f in record.files)
        return self.cache

    def _origin(self, directory: RemoteDirectory) -> Callable[[str], Source]:
        """Where the feeder reads: the origin, or this node's download if it built the manifest."""
        staging = self._staging
        if staging is None:
            return directory.source
        return lambda name: LocalFileSource(staging / name)

    def _follow(self) -> None:
        """Heartbeat, follow placement changes, fetch from the origin when that is the job."""
        assert self.feeder is not None and self.torrent is not None
        if self.credentials is None:
            why = f"not in a swarm ({self.solo_reason}): fetching directly from the origin"
            self.reasons.append(why)
            self.feeder.start(why)
        while not self._stop.is_set():
            if self.state == "complete" and self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
                self._staging = None
            beat = self._heartbeat(self.stats()) if self.credentials else None
            if beat is not None:
                self._follow_placement(beat)
            self._check_stall(beat)
            self._stop.wait(HEARTBEAT_S)  # after the work: the first beat goes out at once

    def _check_stall(self, beat: Beat | None) -> None:
        """Ask the stall policy; when it says so, fetch the missing pieces from the origin."""
        if self.feeder is None or self.layout is None or self.feeder.running:
            return
        why = self.stall.stalled(
            missing=self.layout.num_pieces - len(self._have),
            upstream_ahead=self._upstream_ahead(),
            coordinated=beat is not None,
        )
        if why is not None:
            if beat is None and self.coordinator_error is not None:
                why = f"coordinator unavailable: {self.coordinator_error}"
            else:
                why = f"swarm stalled ({why})"
                _log.warning("swarm %s stalled: %s", self.id, self._stall_report())
            if self.feeder.start(why):
                self.reasons.append(f"origin fallback: {why}")
                self.stall.restart()

    def _follow_placement(self, beat: Beat) -> None:
        assert self.feeder is not None and self.torrent is not None
        if beat.settling:  # the coordinator is rebuilding its state: keep ours
            return
        stripes = beat.stripes
        if stripes != self.torrent.stripes:  # --stripes changed since our certificate
            joined = self.torrent.stripes
            why = f"origin fallback: joined as {joined} stripe(s), the swarm has {stripes}"
            if self.state != "complete" and self.feeder.start(why):
                self.reasons.append(why)
            return
        upstreams = beat.upstreams
        for stripe, up in enumerate(upstreams):
            if up:  # every beat: a no-op while connected, a retry after a drop
                self.torrent.connect_peer(stripe, split_address(up.address))
        feeders = [up and up.node for up in upstreams]
        if feeders != [up and up.node for up in self.upstreams]:
            _log.info("swarm %s: fed by %s", self.id, feeders)
        self.upstreams = upstreams
        # A placement can be transient (e.g. the first heartbeat after Redis lost its state
        # sees a fleet of one): fetch a stripe only while the coordinator keeps saying so.
        gate = self.gate
        assert gate is not None
        fetch = frozenset(beat.fetch)
        gate.update(fetch, beat.size)
        if fetch and self.state != "complete" and not self.feeder.running:
            self.feeder.start(
                f"designated fetcher of stripe(s) {sorted(fetch)} of {stripes}",
                wanted=gate.allows,
            )

    def _upstream_ahead(self) -> bool:
        """An upstream holds pieces this node lacks, yet none arrived: the link is broken.
        (Without this, the tail of a long chain whose head just died would time out and
        pull the whole model from the origin while the new head is already refilling.)"""
        have = len(self._have)
        return any(up and up.have > have for up in self.upstreams)

    def _stall_report(self) -> str:
        """What the swarm looks like when it stops delivering: for the log, to debug it."""
        assert self.torrent is not None and self.layout is not None
        missing = [p for p in range(self.layout.num_pieces) if p not in self._have]
        missing_lt = [p for p in missing if not self.torrent.have_piece(p)]
        stripes = "; ".join(self.torrent.report())
        return (
            f"missing {len(missing)} pieces {missing[:8]} (libtorrent: {missing_lt[:8]}); {stripes}"
        )

    def _heartbeat(self, stats: dict[str, Any]) -> Beat | None:
        """One beat; the coordinator's answer, or None when there is none to follow."""
        body = Heartbeat(
            address=self.address,
            seq=self._seq,
            zone=self.settings.zone,
            link_mbit=self.settings.link_mbit,
            stats=stats,
        )
        path = f"/v1/swarms/{self.id}/nodes/{self.settings.node}"
        answer = self._control(path, body.model_dump(), quiet=True)
        if answer is None:
            return None
        try:
            beat = read_message(Beat, answer, sender=str(self.settings.coordinator))
        except ControlError as exc:
            self._unavailable(exc, quiet=True)
            return None
        self._seq = beat.seq
        return beat

    def _control(
        self,
        path: str,
        body: dict[str, Any] | bytes | None = None,
        *,
        method: str = "POST",
        quiet: bool = False,
    ) -> Any:
        """A coordinator call; None (logged) when it is down: the job carries on without it."""
        if not self.settings.coordinator:
            return None
        try:
            answer = call(
                self.settings.coordinator + path,
                method=method,
                body=body,
                token=self.settings.token,
                timeout=2.0,
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
        if self.coordinator_error is None:  # once per outage, with its cause
            _log.warning("swarm %s: coordinator unavailable: %s", self.id, exc)
        elif not quiet:
            _log.warning("coordinator: %s", exc)
        self.coordinator_error = str(exc)

    def _reachable(self) -> None:
        """The coordinator answered: an outage, if there was one, is over."""
        if self.coordinator_error is not None:
            _log.info("swarm %s: coordinator reachable again", self.id)
            self.coordinator_error = None
