"""One model on one node: join its swarm, keep the chain placement fresh, fill every piece.

Paths to completion, all through the same libtorrent torrent so local readers see one
layout: from the upstream peer the coordinator assigned; from the origin when this node
heads the chain (the designated fetcher); from the origin when nothing arrived for
``stall_s`` or there is no coordinator (never slower than direct; the reason is logged
and reported in ``reasons``).
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

from pagefault.api.manifests import make_piece_manifest, pull
from pagefault.errors import PagefaultError
from pagefault.manifest import PieceManifest
from pagefault.sources import LocalFileSource, Source
from pagefault.sources.remote_dir import RemoteDirectory
from pagefault.swarm.config import AgentConfig
from pagefault.swarm.coordinator import HEARTBEAT_S
from pagefault.swarm.credentials import NodeCredentials, SwarmCA
from pagefault.swarm.feeder import OriginFeeder
from pagefault.swarm.jsonhttp import ControlError, call, split_address
from pagefault.swarm.torrent import TorrentLayout, build_torrent

__all__ = ["ModelJob", "swarm_id"]

_log = logging.getLogger("pagefault.agent")
BUILT_PIECE_SIZE = 1 << 20  # a manifest hashed on the fly: small pieces keep chain hops short


def swarm_id(uri: str) -> str:
    """Every node asking for the same URI joins the same swarm."""
    return hashlib.sha256(uri.encode()).hexdigest()[:24]


class ModelJob:
    def __init__(
        self,
        uri: str,
        session: lt.session,
        settings: AgentConfig,
        address: str,
        credentials: tuple[bytes, NodeCredentials] | None,
    ) -> None:
        self.uri = uri
        self.id = swarm_id(uri)
        self.session = session
        self.settings = settings
        self.address = address  # this node's libtorrent listener, as peers reach it
        self.credentials = credentials  # (CA PEM, this node's certificate); None: no swarm
        self.save_path = settings.data_dir / self.id
        self.state = "starting"
        self.reasons: list[str] = []
        self.error: str | None = None
        self.started = time.monotonic()
        self.first_piece_s: float | None = None
        self.complete_s: float | None = None
        self.layout: TorrentLayout | None = None
        self.handle: lt.torrent_handle | None = None
        self.feeder: OriginFeeder | None = None
        self.upstream: str | None = None
        self.upstream_node: str | None = None
        self.fetcher = False  # the coordinator's latest word: this node heads the chain
        self._seq = -1
        self._staging: Path | None = None  # a first fetcher's full download, until complete
        self._have: set[int] = set()
        self._changed = threading.Condition()
        self._last_progress = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job-{self.id}", daemon=True)

    def start(self) -> ModelJob:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    # -- called from the agent's alert loop ---------------------------------------------
    def piece_finished(self, piece: int) -> None:
        with self._changed:
            self._have.add(piece)
            now = time.monotonic()
            self._last_progress = now
            if self.first_piece_s is None:
                self.first_piece_s = now - self.started
            if self.layout and len(self._have) == self.layout.num_pieces:
                self.complete_s = now - self.started
                self.state = "complete"
            self._changed.notify_all()

    def peer_banned(self, ip: str, why: str) -> None:
        """A peer sent pieces that failed their hash: have the coordinator drop it."""
        _log.warning("swarm %s: banned peer %s (%s)", self.id, ip, why)
        self.reasons.append(f"banned peer {ip}: {why}")
        if self.upstream and split_address(self.upstream)[0] == ip and self.upstream_node:
            self._control(
                f"/v1/swarms/{self.id}/reports/{self.upstream_node}",
                {"reason": why, "reporter": self.settings.node},
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

    def stats(self) -> dict[str, Any]:
        """Progress and byte counts: what the heartbeat reports to the coordinator."""
        status = self.handle.status() if self.handle else None
        return {
            "state": self.state,
            "pieces": self.layout.num_pieces if self.layout else None,
            "have": len(self._have),
            "from_origin": self.feeder.bytes if self.feeder else 0,
            "from_peers": status.total_payload_download if status else 0,
            "uploaded": status.total_payload_upload if status else 0,
            "first_piece_s": self.first_piece_s,
            "complete_s": self.complete_s,
        }

    def describe(self) -> dict[str, Any]:
        """Everything a local reader needs: the stats, where each file lies, what went wrong."""
        layout = self.layout
        return {
            **self.stats(),
            "id": self.id,
            "uri": self.uri,
            "error": self.error,
            "reasons": list(self.reasons),
            "save_path": str(self.save_path),
            "piece_size": layout.piece_size if layout else None,
            "files": [
                {
                    "name": f.name,
                    "size": f.size,
                    "first_piece": f.first_piece,
                    "pieces": f.pieces,
                    "path": str(f.path(self.save_path)),
                }
                for f in (layout.files if layout else ())
            ],
            "upstream": self.upstream,
        }

    # -- the job -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            directory, _ = RemoteDirectory.split(self.uri)
            manifest = self._manifest(directory)
            self._add_torrent(manifest, directory)
            self._follow()
        except Exception as exc:
            _log.exception("swarm %s failed", self.id)
            with self._changed:
                self.error, self.state = f"{type(exc).__name__}: {exc}", "failed"
                self._changed.notify_all()

    def _manifest(self, directory: RemoteDirectory) -> PieceManifest:
        """The origin's published manifest, or the one a first fetcher published, or build it."""
        published = directory.piece_manifest()
        if published is not None and all(f.roots or not f.size for f in published.files):
            return published
        while not self._stop.is_set():
            shared = self._control(f"/v1/swarms/{self.id}/manifest", method="GET", quiet=True)
            if isinstance(shared, dict) and "manifest" in shared:
                data = base64.b64decode(shared["manifest"])
                return PieceManifest.from_json(data, name=f"swarm {self.id} manifest")
            beat = self._heartbeat({})
            if beat is None or beat.get("fetcher"):
                return self._build_manifest()
            self._stop.wait(HEARTBEAT_S)
        raise PagefaultError("stopped before the model's manifest was available")

    def _build_manifest(self) -> PieceManifest:
        """First fetcher, no usable published manifest: download once, hash, publish."""
        self.reasons.append("no published manifest with v2 roots: built it from the origin")
        staging = self.settings.data_dir / f"{self.id}.staging"
        pull(self.uri, staging)
        manifest = make_piece_manifest(staging, piece_size=BUILT_PIECE_SIZE)
        self._staging = staging
        self._control(f"/v1/swarms/{self.id}/manifest", manifest.to_json(), method="PUT")
        return manifest

    def _add_torrent(self, manifest: PieceManifest, directory: RemoteDirectory) -> None:
        ca, node = self.credentials or (SwarmCA.create().cert_pem, None)
        info = lt.torrent_info(build_torrent(manifest, ca))
        self.layout = TorrentLayout.of(info)
        params = lt.add_torrent_params()
        params.ti = info
        params.save_path = str(self.save_path)
        params.flags = lt.torrent_flags.disable_pex | lt.torrent_flags.sequential_download
        params.flags |= lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd
        self.handle = self.session.add_torrent(params)
        if node is not None:
            self.handle.set_ssl_certificate_buffer(
                node.cert_pem.decode(), node.key_pem.decode(), ""
            )
        self.feeder = OriginFeeder(
            self.handle,
            self.layout,
            manifest,
            self._origin(directory),
            threads=self.settings.origin_threads,
        )
        self.state = "swarming"

    def _origin(self, directory: RemoteDirectory) -> Callable[[str], Source]:
        """Where the feeder reads: the origin, or this node's download if it built the manifest."""
        staging = self._staging
        if staging is None:
            return directory.source
        return lambda name: LocalFileSource(staging / name)

    def _follow(self) -> None:
        """Heartbeat, follow placement changes, fetch from the origin when that is the job."""
        assert self.feeder is not None and self.handle is not None
        if self.credentials is None:
            why = "no coordinator (no swarm membership): fetching directly from the origin"
            self.reasons.append(why)
            self.feeder.start(why)
        while not self._stop.wait(HEARTBEAT_S):
            if self.state == "complete" and self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
                self._staging = None
            beat = self._heartbeat(self.stats()) if self.credentials else None
            if beat is not None:
                self._follow_placement(beat)
            stalled = time.monotonic() - self._last_progress > self.settings.stall_s
            if self.state != "complete" and stalled and not self.feeder.running:
                why = f"no piece for {self.settings.stall_s:.0f} s"
                if self.feeder.start(f"swarm stalled ({why})"):
                    self.reasons.append(f"origin fallback: swarm stalled ({why})")
                    self._last_progress = time.monotonic()

    def _follow_placement(self, beat: dict[str, Any]) -> None:
        assert self.feeder is not None and self.handle is not None
        upstream = beat.get("upstream")
        self.upstream_node = beat.get("upstream_node")
        if upstream and upstream != self.upstream:
            self.handle.connect_peer(split_address(upstream))
            _log.info("swarm %s: upstream is now %s", self.id, upstream)
        self.upstream = upstream
        # A placement can be transient (e.g. the first heartbeat after Redis lost its state
        # sees a chain of one): fetch only while the coordinator keeps saying so.
        self.fetcher = bool(beat.get("fetcher"))
        if self.fetcher and self.state != "complete" and not self.feeder.running:
            self.feeder.start(
                "designated fetcher (head of the chain)", still_wanted=lambda: self.fetcher
            )

    def _heartbeat(self, stats: dict[str, Any]) -> dict[str, Any] | None:
        body = {
            "address": self.address,
            "seq": self._seq,
            "zone": self.settings.zone,
            "stats": stats,
        }
        beat = self._control(f"/v1/swarms/{self.id}/nodes/{self.settings.node}", body, quiet=True)
        if isinstance(beat, dict):
            self._seq = int(beat.get("seq", self._seq))
            return beat
        return None

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
            return call(
                self.settings.coordinator + path,
                method=method,
                body=body,
                token=self.settings.token,
                timeout=2.0,
            )
        except ControlError as exc:
            if not quiet or exc.status not in (404, None, 503):
                _log.warning("coordinator: %s", exc)
            return None
