"""Prometheus metrics of this process's loads and saves: ``pagefault.metrics.serve(port)``.

Counters only, fed once per finished load or save from its stats, so a scrape costs
nothing and rates come from ``rate()``: bytes by where they came from (``local``,
``ram`` and ``disk`` tiers of the node cache, ``peers``, ``origin``: the cache's hit
ratio is ``(ram + disk) / (ram + disk + peers + origin)``), seconds by stage (summed over
I/O threads, as in ``LoadStats``), loads by mode and page kind, pieces caught corrupt,
and saves' bytes and seconds. A swarm agent's ``/metrics`` serves these beside its own
per-model figures (:mod:`pagefault.swarm.metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import REGISTRY, Counter, start_http_server
from prometheus_client.registry import CollectorRegistry

__all__ = ["record_load", "record_save", "register_into", "serve"]

_LOAD_BYTES = Counter("pagefault_load_bytes", "Bytes loaded, by where they came from", ["source"])
_LOAD_SECONDS = Counter(
    "pagefault_load_stage_seconds",
    "Seconds spent per load stage, summed over I/O threads (wall: 'load')",
    ["stage"],
)
_LOADS = Counter("pagefault_loads", "Loads finished", ["mode", "pages", "device"])
_CORRUPT = Counter("pagefault_load_corrupt_pieces", "Pieces caught by their digest and re-read")
_SAVE_BYTES = Counter("pagefault_save_bytes", "Bytes saved")
_SAVE_SECONDS = Counter(
    "pagefault_save_seconds", "Seconds per save phase (stall: what the caller waited)", ["phase"]
)
_SAVES = Counter("pagefault_saves", "Saves committed", ["mode"])


def record_load(
    *,
    mode: str,
    pages: str,
    device: str,
    bytes_by_source: Mapping[str, int],
    stage_seconds: Mapping[str, float],
    corrupt_pieces: int = 0,
) -> None:
    """Count one finished load."""
    for source, nbytes in bytes_by_source.items():
        _LOAD_BYTES.labels(source).inc(nbytes)
    for stage, seconds in stage_seconds.items():
        _LOAD_SECONDS.labels(stage).inc(seconds)
    _LOADS.labels(mode, pages or "none", device).inc()
    _CORRUPT.inc(corrupt_pieces)


def record_save(*, mode: str, nbytes: int, phase_seconds: Mapping[str, float]) -> None:
    """Count one committed save."""
    _SAVE_BYTES.inc(nbytes)
    for phase, seconds in phase_seconds.items():
        _SAVE_SECONDS.labels(phase).inc(seconds)
    _SAVES.labels(mode).inc()


def register_into(registry: CollectorRegistry) -> None:
    """Also expose these counters through ``registry`` (an agent's ``/metrics``)."""
    for counter in (
        _LOAD_BYTES,
        _LOAD_SECONDS,
        _LOADS,
        _CORRUPT,
        _SAVE_BYTES,
        _SAVE_SECONDS,
        _SAVES,
    ):
        registry.register(counter)


def serve(port: int, addr: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY) -> None:
    """Serve ``/metrics`` on ``addr:port`` from a daemon thread (loopback by default:
    bind ``0.0.0.0`` on purpose when a scraper runs on another host)."""
    start_http_server(port, addr=addr, registry=registry)
