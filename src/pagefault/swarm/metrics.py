"""Prometheus metrics of an agent, served as ``GET /metrics`` on its local API.

A collector reads the jobs at scrape time, so the numbers are the ones ``swarm status``
shows and there is no second set of counters to keep in step. Per model (label ``model``,
the swarm id): bytes received by source (origin / peers), bytes uploaded, pieces held and
total, first-piece and completion times, and the piece wait: seconds from one verified
piece to the next, whose tail shows stalls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pagefault.swarm.job import ModelJob

__all__ = ["PIECE_WAIT_BUCKETS", "AgentCollector"]

PIECE_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class AgentCollector(Collector):
    def __init__(self, jobs: Callable[[], Iterable[ModelJob]]) -> None:
        self.jobs = jobs

    def collect(self) -> Iterator[Metric]:
        received = CounterMetricFamily(
            "pagefault_swarm_received_bytes", "Model bytes received", labels=["model", "source"]
        )
        uploaded = CounterMetricFamily(
            "pagefault_swarm_uploaded_bytes", "Model bytes uploaded to peers", labels=["model"]
        )
        pieces = GaugeMetricFamily(
            "pagefault_swarm_pieces",
            "Verified pieces held, and in the model",
            labels=["model", "kind"],
        )
        timings = GaugeMetricFamily(
            "pagefault_swarm_seconds",
            "Seconds from the request to an event",
            labels=["model", "event"],
        )
        waits = HistogramMetricFamily(
            "pagefault_swarm_piece_wait_seconds",
            "Seconds from one verified piece to the next",
            labels=["model"],
        )
        for job in self.jobs():
            stats = job.stats()
            received.add_metric([job.id, "origin"], stats["from_origin"])
            received.add_metric([job.id, "peers"], stats["from_peers"])
            uploaded.add_metric([job.id], stats["uploaded"])
            pieces.add_metric([job.id, "held"], stats["have"])
            pieces.add_metric([job.id, "total"], stats["pieces"] or 0)
            for event in ("first_piece", "complete"):
                if stats[f"{event}_s"] is not None:
                    timings.add_metric([job.id, event], stats[f"{event}_s"])
            gaps = job.piece_waits()
            buckets = [(str(b), float(sum(g <= b for g in gaps))) for b in PIECE_WAIT_BUCKETS]
            waits.add_metric([job.id], [*buckets, ("+Inf", float(len(gaps)))], sum_value=sum(gaps))
        yield from (received, uploaded, pieces, timings, waits)
