"""One model on one node: join its swarm, keep the placement fresh, fill every piece.

The job's own thread is the one owner of the swarm's state. It takes three steps:
obtain the model's manifest (:mod:`pagefault.swarm.obtain`), build the torrent and what
fills it (:mod:`pagefault.swarm.filling`), then once a heartbeat follow the placement and
ask the stall policy whether to read the origin. What readers wait on is the piece
ledger (:mod:`pagefault.swarm.ledger`), which only admission writes.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libtorrent as lt

from pagefault.cache import NodeCache, remember
from pagefault.errors import PagefaultError
from pagefault.sources import LocalFileSource, Source
from pagefault.sources.remote_dir import RemoteDirectory
from pagefault.swarm.config import AgentConfig
from pagefault.swarm.coordinator_client import CoordinatorClient
from pagefault.swarm.credentials import NodeCredentials, SwarmCA
from pagefault.swarm.filling import Filling
from pagefault.swarm.ledger import PieceLedger
from pagefault.swarm.messages import ModelFile, ModelStatus
from pagefault.swarm.obtain import ModelPlan, obtain
from pagefault.swarm.protocol import HEARTBEAT_S
from pagefault.swarm.striped import StripedTorrent

__all__ = ["ModelJob", "swarm_id"]

_log = logging.getLogger("pagefault.agent")


def swarm_id(uri: str) -> str:
    """Every node asking for the same URI joins the same swarm."""
    return hashlib.sha256(uri.encode()).hexdigest()[:24]


class ModelJob:
    """One model on this node, from the first request until the agent stops.

    ``credentials``: (CA PEM, this node's certificate), or None when there is no swarm
    (``solo_reason`` says why); ``stripes``: torrents per model, as the coordinator places
    them; ``address``: this node's libtorrent listener, as peers reach it."""

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
        self.id = swarm_id(uri)
        self.session = session
        self.settings = settings
        self.credentials = credentials
        self.solo_reason = solo_reason
        self.stripes = stripes
        self.cache = cache  # where admitted pieces go, for every process on the node
        self.save_path = settings.data_dir / self.id
        self.coordinator = CoordinatorClient(settings, self.id, address)
        self.ledger = PieceLedger()
        self.filling: Filling | None = None  # once the torrent is built
        self.etags: dict[str, str | None] = {}  # per file: the version described
        self.reasons: list[str] = []
        self.error: str | None = None
        self._release_lease: Callable[[], None] = lambda: None
        self._stop = threading.Event()
        self._laid_out = threading.Event()  # the files' layout is known, or never will be
        self._thread = threading.Thread(target=self._run, name=f"job-{self.id}", daemon=True)

    def start(self) -> ModelJob:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._laid_out.set()
        self.ledger.interrupt()  # its followers (loaders' feeds) learn it now
        if self.filling is not None:
            self.filling.close()
        self._release_lease()

    def wait_for_layout(self, timeout: float) -> None:
        """Return once the files' layout is known (or the job failed or stopped), or after
        ``timeout`` s: an open then answers with the layout in one round trip, where a
        loader polled for it every 50 ms (0.05-0.1 s of every load's start)."""
        self._laid_out.wait(timeout)

    @property
    def stopping(self) -> bool:
        """The agent is shutting down: no more pieces will come from this job."""
        return self._stop.is_set()

    @property
    def state(self) -> str:
        if self.error is not None:
            return "failed"
        if self.ledger.complete:
            return "complete"
        return "swarming" if self.filling is not None else "starting"

    def stats(self) -> dict[str, Any]:
        """Progress and byte counts: what the heartbeat reports to the coordinator."""
        filling = self.filling
        from_peers, uploaded = filling.torrent.payload_totals() if filling else (0, 0)
        return {
            "state": self.state,
            "pieces": self.ledger.total,
            "have": self.ledger.count,
            "from_origin": filling.feeder.bytes if filling else 0,
            "from_peers": from_peers,
            "uploaded": uploaded,
            "first_piece_s": self.ledger.first_piece_s,
            "complete_s": self.ledger.complete_s,
        }

    def describe(self) -> ModelStatus:
        """Everything a local reader needs: the stats, where each file lies, what went wrong."""
        filling = self.filling
        layout = filling.layout if filling else None
        cache = filling.admission.cache if filling else None  # None: not in the node cache
        return ModelStatus(
            **self.stats(),
            id=self.id,
            uri=self.uri,
            error=self.error,
            coordinator_error=self.coordinator.error,
            reasons=list(self.reasons),
            save_path=str(self.save_path),
            cache_dir=str(cache.config.disk_dir) if cache is not None else None,
            piece_size=layout.piece_size if layout else None,
            files=[
                ModelFile(
                    name=f.name,
                    size=f.size,
                    first_piece=f.first_piece,
                    pieces=f.pieces,
                    path=str(f.path(self.save_path)),
                    etag=self.etags.get(f.name),
                )
                for f in (layout.files if layout else ())
            ],
            upstreams=[up.address if up else None for up in (filling.upstreams if filling else [])],
        )

    # -- the job's thread ----------------------------------------------------------------
    def _run(self) -> None:
        try:
            staging = self.settings.data_dir / f"{self.id}.staging"
            plan = obtain(self.uri, self.coordinator, staging, self._stop)
            self.reasons.extend(plan.reasons)
            if plan.description is not None:
                self.etags = {f.name: f.etag for f in plan.description.files}
            self.filling = filling = self._fill(plan)
            self._laid_out.set()
            filling.admit_held()  # if the files' check ended before the alerts could see us
            self._follow(filling, plan.staging)
        except Exception as exc:
            _log.exception("swarm %s failed", self.id)
            self.error = f"{type(exc).__name__}: {exc}"
            self.ledger.interrupt()
            self._laid_out.set()

    def _fill(self, plan: ModelPlan) -> Filling:
        """Add the model's torrent to the session, and what fills it."""
        ca, node = self.credentials or (SwarmCA.create().cert_pem, None)
        torrent = StripedTorrent.add(
            self.session, plan.manifest, ca, self.save_path, stripes=self.stripes, node=node
        )
        return Filling(
            torrent,
            plan.manifest,
            self.save_path,
            origin=self._origin(plan.staging),
            ledger=self.ledger,
            coordinator=self.coordinator,
            cache=self._node_cache_for(plan),
            stall_s=self.settings.stall_s,
            origin_threads=self.settings.origin_threads,
            link_mbit=self.settings.link_mbit,
            stop=self._stop,
            reasons=self.reasons,
        )

    def _origin(self, staging: Path | None) -> Callable[[str], Source]:
        """Where the feeder reads: the origin, or this node's download if it built the manifest."""
        if staging is None:
            return RemoteDirectory.split(self.uri)[0].source
        return lambda name: LocalFileSource(staging / name)

    def _node_cache_for(self, plan: ModelPlan) -> NodeCache | None:
        """Record the model in the node cache (so ``load(uri)`` finds it) and hold a lease on
        its files while seeding; None when admitted pieces cannot go there."""
        if self.cache is None or plan.description is None:
            return None
        manifest = plan.manifest
        try:
            learned = manifest if plan.description.pieces is None else None
            record = remember(plan.description, self.cache, learned=learned)
        except PagefaultError as exc:
            self.reasons.append(f"not in the node cache: {exc}")
            return None
        if record.piece_size != manifest.piece_size:
            why = f"its pieces are {record.piece_size} bytes, the swarm's {manifest.piece_size}"
            self.reasons.append(f"not in the node cache: {why}")
            return None
        self._release_lease = self.cache.lease(f.key for f in record.files)
        return self.cache

    def _follow(self, filling: Filling, staging: Path | None) -> None:
        """Heartbeat, follow placement changes, fetch from the origin when that is the job."""
        if self.credentials is None:
            filling.fetch_directly(
                f"not in a swarm ({self.solo_reason}): fetching directly from the origin"
            )
        while not self._stop.is_set():
            if staging is not None and self.ledger.complete:
                shutil.rmtree(staging, ignore_errors=True)
                staging = None
            beat = self.coordinator.heartbeat(self.stats()) if self.credentials else None
            if beat is not None:
                filling.follow(beat)
            filling.check_stall(coordinated=beat is not None)
            self._stop.wait(HEARTBEAT_S)  # after the work: the first beat goes out at once
