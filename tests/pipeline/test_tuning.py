"""Default threads and staging sizes, for the CPUs this process may run on."""

from __future__ import annotations

import pytest

from pagefault.errors import ConfigError, SinkError
from pagefault.pipeline import tuning
from pagefault.pipeline.tuning import DEFAULT_REQUEST_SIZE, MAX_THREADS, auto_tuning


@pytest.mark.parametrize(
    ("cpus", "spare_cpu", "threads"),
    [
        (1, False, 2),
        (2, False, 2),
        (6, False, 6),
        (64, False, MAX_THREADS),
        (1, True, 1),  # a spare CPU for read-ahead: one reader less
        (2, True, 1),
        (6, True, 5),
        (64, True, MAX_THREADS),
    ],
)
def test_local_loads_get_one_thread_per_cpu_and_remote_ones_many_connections(
    monkeypatch: pytest.MonkeyPatch, cpus: int, spare_cpu: bool, threads: int
) -> None:
    monkeypatch.setattr(tuning, "cpu_count", lambda: cpus)
    common = {"threads": None, "request_size": None, "memory_limit": None, "staged": False}
    assert auto_tuning(**common, spare_cpu=spare_cpu).threads == threads
    assert auto_tuning(**common, remote=True).threads == tuning.REMOTE_CONNECTIONS
    assert auto_tuning(**{**common, "threads": 3}, spare_cpu=spare_cpu).threads == 3


def test_staging_ring_fits_the_memory_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tuning, "cpu_count", lambda: 2)
    chosen = auto_tuning(threads=None, request_size=None, memory_limit=256 << 20, staged=True)
    assert chosen.staging_slots * chosen.slot_bytes <= 256 << 20
    assert chosen.slot_bytes <= DEFAULT_REQUEST_SIZE
    assert chosen.threads <= chosen.staging_slots


def test_bad_knobs_are_rejected() -> None:
    with pytest.raises(ConfigError, match="threads must be at least 1"):
        auto_tuning(threads=0, request_size=None, memory_limit=None, staged=False)
    with pytest.raises(ConfigError, match="request_size"):
        auto_tuning(threads=None, request_size=100, memory_limit=None, staged=False)
    with pytest.raises(SinkError, match="memory_limit"):
        auto_tuning(threads=None, request_size=None, memory_limit=1 << 20, staged=True)
