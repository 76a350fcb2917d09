"""Prometheus metrics of an agent, served as ``GET /metrics`` on its local API.

A collector reads the jobs at scrape time, so the numbers are the ones ``swarm status``
shows and there is no second set of counters to keep in step. Per model (label ``model``,
the swarm id): bytes received by source (origin / peers), bytes uploaded, pieces held and
total, first-piece and completion times, and the piece wait: seconds from one verified
piece to the next, whose tail shows stalls.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from pagefault.swarm.job import ModelJob

__all__ = ["PIECE_WAIT_BUCKETS", "AgentCollector", "WaitHistogram"]

PIECE_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class WaitHistogram:
    """Piece waits counted into PIECE_WAIT_BUCKETS as they happen: a model of a million
    pieces costs ten counters, not a million floats re-counted at every scrape."""

    def __init__(self) -> None:
        self._counts = [0] * (len(PIECE_WAIT_BUCKETS) + 1)  # the last one: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(PIECE_WAIT_BUCKETS, seconds)] += 1
            self._sum += seconds

    def buckets(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative (upper bound, count) pairs ending with "+Inf", and the sum."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        bounds = [*(str(b) for b in PIECE_WAIT_BUCKETS), "+Inf"]
        return [(b, float(n)) for b, n in zip(bounds, accumulate(counts), strict=True)], total


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
            buckets, total = job.ledger.waits.buckets()
            waits.add_metric([job.id], buckets, sum_value=total)
        yield from (received, uploaded, pieces, timings, waits)
