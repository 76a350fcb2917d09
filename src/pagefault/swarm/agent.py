"""``pagefault agent``: one per node. A libtorrent session serving and filling models, and a
local HTTP API through which the node's processes ask for a model and wait for its pieces.

The session speaks only SSL torrents (listen socket ``ip:port`` with TLS), with DHT, local
discovery, UPnP and PEX off: peers come from the coordinator alone. The alert loop turns
libtorrent events into job state (piece done, peer banned for corrupt data).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import libtorrent as lt
from prometheus_client import CollectorRegistry, generate_latest

from pagefault.cache import CacheConfig, NodeCache, load_config
from pagefault.errors import ControlError
from pagefault.metrics import register_into
from pagefault.swarm.config import AgentConfig
from pagefault.swarm.credentials import NodeCredentials
from pagefault.swarm.filling import Filling
from pagefault.swarm.job import ModelJob, swarm_id
from pagefault.swarm.jsonhttp import call, split_address
from pagefault.swarm.messages import Credentials, read_message
from pagefault.swarm.metrics import AgentCollector
from pagefault.swarm.sockets import cap_unsent_bytes, receive_buffer_bytes

if TYPE_CHECKING:
    from pagefault.swarm.server import ApiServer

__all__ = ["Agent", "AgentConfig"]

# libtorrent errors that change nothing: OpenSSL 3 cannot decode the built-in DH
# parameters, and TLS uses ECDHE anyway.
_HARMLESS = ("[dh params]",)
# asking an unreachable coordinator again: after 0.5 s, then doubling up to 5 s
_JOIN_RETRY_S, _JOIN_RETRY_MAX_S = 0.5, 5.0
_REFUSED = "the coordinator refused this node's swarm token"
_UNREACHABLE = "the coordinator is unreachable"
_BLOCKED = 1  # libtorrent's ip_filter flag for "no connection"
_log = logging.getLogger("pagefault.agent")
_ALERTS = (
    lt.alert.category_t.error_notification
    | lt.alert.category_t.status_notification
    | lt.alert.category_t.piece_progress_notification
    | lt.alert.category_t.peer_notification
    | lt.alert.category_t.connect_notification
    | lt.alert.category_t.storage_notification  # read_piece_alert: pieces to admit
)


class Agent:
    """One node's swarm member: a libtorrent session, its model jobs, the local API."""

    def __init__(self, config: AgentConfig, cache_config: CacheConfig | None = None) -> None:
        self.config = config
        cache_config = cache_config or load_config()
        self.session = lt.session(
            {
                "listen_interfaces": f"{config.listen}s",  # "s": TLS only
                "enable_dht": False,
                "enable_lsd": False,
                "enable_upnp": False,
                "enable_natpmp": False,
                "alert_mask": _ALERTS,
                "allow_multiple_connections_per_ip": True,
                # TCP only: a uTP flow (LEDBAT, in user space) between two live nodes would
                # sometimes sit idle for 10+ s with 48 requests outstanding, and the node
                # behind it fell back to the origin; 3 of 3 16-node TCP runs had no stall
                "enable_outgoing_utp": False,
                "enable_incoming_utp": False,
                # a tree link carries half the model: keep plenty of requests in flight
                "max_out_request_queue": 1500,
                "request_queue_time": 2,
                # keep a link to an upstream that completed while this node still seems to
                # want nothing from it: now and then its last HAVE lands after its
                # upload-only message, and libtorrent closed the link in between, leaving
                # the node without the piece or a peer to get it from (docs/benchmarks.md)
                "close_redundant_connections": False,
                # a dropped peer may be dialed again at once, not after 60 s: peers are the
                # coordinator's placement, and a node pausing its torrent to dial its own
                # upstream at once (StripedTorrent.connect_peer) cuts a child whose
                # handshake was under way; at 60 s that child stalled and read the whole
                # model from the origin, at 1 s it and the nodes behind it started 1-2 s
                # late; now it dials again within 0.1 s (Filling.peer_disconnected), which
                # needs libtorrent to accept the dial at once. libtorrent's own redials still
                # wait for its once-a-second tick.
                "min_reconnect_time": 0,
                # a short queue on every forwarding link (pagefault.swarm.sockets)
                "recv_socket_buffer_size": receive_buffer_bytes(config.link_mbit),
            }
        )
        self.jobs: dict[str, ModelJob] = {}
        # the node cache: every admitted piece goes there, so any process on the node
        # loads a swarmed model from it (PAGEFAULT_CACHE=off: the agent's files only)
        self.cache = NodeCache(cache_config) if cache_config.enabled else None
        self.metrics = CollectorRegistry()
        self.metrics.register(AgentCollector(lambda: list(self.jobs.values())))
        register_into(self.metrics)  # loads and saves made in this process too
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._join_lock = threading.Lock()  # one certificate request at a time
        self._credentials: tuple[bytes, NodeCredentials] | None = None
        self._stripes = 1  # the coordinator's placement: torrents per model
        self._solo_reason = "no coordinator configured (--coordinator)"
        self._alerts = threading.Thread(target=self._alert_loop, name="alerts", daemon=True)
        self._blocked = lt.ip_filter()  # hosts that sent corrupt pieces: no link, any model
        self.api: ApiServer | None = None  # the local API, from start()

    def block(self, ip: str) -> None:
        """Refuse every link to and from ``ip``, in every torrent of this node. libtorrent
        bans a peer's entry (address and port): a corrupt node dialing in again from a new
        port was a new peer, banned again after each bad piece, and while it stayed
        linked, holding every piece, the fetcher that fed the fleet held off reading the
        piece it had spoiled."""
        with self._lock:
            self._blocked.add_rule(ip, ip, _BLOCKED)
            self.session.set_ip_filter(self._blocked)

    @property
    def peer_address(self) -> str:
        host, _ = split_address(self.config.listen)
        return f"{host}:{self.session.ssl_listen_port()}"

    def start(self) -> Agent:
        from pagefault.swarm.routes import agent_server  # noqa: PLC0415 - FastAPI: see server

        cap_unsent_bytes(self.config.notsent_lowat)
        self.api = agent_server(self, self.config.api).start()
        self._alerts.start()
        _log.info(
            "agent %s: peers on %s, API on %s",
            self.config.node,
            self.peer_address,
            self.api.address,
        )
        if self.config.coordinator and self._membership() is None and not self._refused:
            threading.Thread(target=self._join_when_reachable, name="join", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        # libtorrent aborts the process (std::terminate) if the interpreter exits while a
        # thread is still inside wait_for_alert: the loop wakes within its 500 ms wait.
        # First, too: a piece read back after its job stopped had no admission to go to.
        if self._alerts.is_alive():
            self._alerts.join()
        for job in self.jobs.values():
            job.stop()
        if self.api is not None:
            self.api.stop()

    def open(self, uri: str) -> ModelJob:
        """The job for ``uri``, started on first request."""
        with self._lock:
            job = self.jobs.get(swarm_id(uri))
            if job is None:
                job = ModelJob(
                    uri,
                    self.session,
                    self.config,
                    self.peer_address,
                    self._membership(),
                    cache=self.cache,
                    stripes=self._stripes,
                    solo_reason=self._solo_reason,
                )
                self.jobs[job.id] = job
                job.start()
        return job

    def _join_when_reachable(self) -> None:
        """Ask the coordinator again, backing off, until it answers: a node started before
        its coordinator (any order, on Kubernetes) joins then, not when its first model is
        asked for (an N=8 fleet spent 0.4-0.6 s of its start issuing five certificates)."""
        delay = _JOIN_RETRY_S
        while not self._stop.wait(delay):
            if self._membership() is not None or self._refused:
                return
            delay = min(2 * delay, _JOIN_RETRY_MAX_S)

    @property
    def _refused(self) -> bool:
        return self._solo_reason.startswith(_REFUSED)

    def _membership(self) -> tuple[bytes, NodeCredentials] | None:
        """This node's swarm certificate, from the coordinator (None when it is unreachable)."""
        with self._join_lock:
            if self._credentials is None and self.config.coordinator:
                self._credentials = self._ask_for_credentials(self.config.coordinator)
            return self._credentials

    def _ask_for_credentials(self, coordinator: str) -> tuple[bytes, NodeCredentials] | None:
        try:
            reply = call(
                f"{coordinator}/v1/credentials/{self.config.node}",
                method="POST",
                token=self.config.token,
            )
            issued = read_message(Credentials, reply, sender=coordinator)
        except ControlError as exc:
            refused = exc.status in (401, 403)
            reason = (
                f"{_REFUSED}: check --token or PAGEFAULT_SWARM_TOKEN"
                if refused
                else f"{_UNREACHABLE}: {exc}"
            )
            if reason != self._solo_reason:  # once per cause, not once per retry
                if refused:
                    _log.error(
                        "no swarm membership (%s); models come straight from the origin", reason
                    )
                else:
                    _log.warning(
                        "no swarm membership yet (%s); until the coordinator answers, "
                        "models come straight from the origin",
                        reason,
                    )
            self._solo_reason = reason
            return None
        if self._solo_reason.startswith(_UNREACHABLE):
            _log.info("swarm membership: the coordinator answered")
        self._stripes = issued.stripes
        return issued.ca.encode(), NodeCredentials(issued.cert.encode(), issued.key.encode())

    def _alert_loop(self) -> None:
        while not self._stop.is_set():
            self.session.wait_for_alert(500)
            for alert in self.session.pop_alerts():
                self._dispatch(alert)

    def _dispatch(self, alert: Any) -> None:
        error = bool(alert.category() & lt.alert.category_t.error_notification)
        if error and any(marker in alert.message() for marker in _HARMLESS):
            return
        handle = getattr(alert, "handle", None)
        filling = self._filling_for(handle) if handle is not None else None
        if filling is None:
            if error:
                _log.warning("libtorrent: %s", alert.message())
            return
        if isinstance(alert, lt.piece_finished_alert):
            filling.piece_finished(int(alert.piece_index))
        elif isinstance(alert, lt.read_piece_alert):
            failed = alert.error.value() != 0
            filling.piece_read(
                int(alert.piece), bytes(alert.buffer), alert.error.message() if failed else None
            )
        elif isinstance(alert, lt.torrent_checked_alert):
            filling.admit_held()
        elif isinstance(alert, lt.peer_ban_alert):
            self.block(str(alert.endpoint[0]))
            filling.peer_banned(str(alert.endpoint[0]), "sent pieces that failed verification")
        elif isinstance(alert, lt.peer_disconnected_alert):
            _log.info("swarm %s: %s", filling.swarm, alert.message())
            address = (str(alert.endpoint[0]), int(alert.endpoint[1]))
            filling.peer_disconnected(alert.handle, address, alert.error.message())
        elif isinstance(alert, lt.hash_failed_alert):
            _log.warning("swarm %s: piece %d failed its hash", filling.swarm, alert.piece_index)
        elif error:
            _log.warning("swarm %s: %s", filling.swarm, alert.message())

    def _filling_for(self, handle: Any) -> Filling | None:
        """The torrent a libtorrent alert is about (None: not one of ours, or not built)."""
        for job in self.jobs.values():
            filling = job.filling
            if filling is not None and filling.torrent.owns(handle):
                return filling
        return None

    # -- for the local API ---------------------------------------------------------------
    def job(self, model_id: str) -> ModelJob:
        job = self.jobs.get(model_id)
        if job is None:
            raise ControlError("no such model on this agent", 404)
        return job

    def metrics_text(self) -> bytes:
        """Prometheus text: the jobs' swarm figures and this process's loads and saves."""
        return generate_latest(self.metrics)
