"""Defaults for threads, request size and staging memory, and how they are derived.

Measured on the 2-core development VM (docs/benchmarks.md). A mapped load only faults
file pages in (``MADV_POPULATE_READ``): one thread per usable CPU (at least 2, at most
16); 4 threads on 2 cores were slower cold (1.8-2.7 s vs 1.5-2.1 s for 4.3 GB). A load
that reads into memory (the private arena, ``load_into``, CUDA staging) alternates
between waiting on the disk and copying into freshly faulted pages, so it runs two
threads per CPU (at least 4, at most 16): while one waits, the other copies. On 2 cores,
in five sets of interleaved rounds (2026-11-30), 4 threads won three (cold 2.3-2.9 s vs
3.4-3.9 s for 4.3 GB, twice; hot 0.9-1.3 s vs 1.7-2.1 s), tied one (hot) and lost one
(cold 2.6-3.0 s vs 2.0-2.6 s); 8 threads were no better. On this VM the cost of fresh
memory swings with what the previous process freed, which is most of that noise.

Requests are 64 MiB: on a cold page cache 2 threads x 16 MiB reads took 6.8 s for
4.3 GB where 2 x 64 MiB took 3.9 s (the device wants large requests in flight); hot,
the two sizes were equal.

Remote origins are latency- and per-connection-bound instead: the default is 16
concurrent ranged GETs of 16 MiB (one piece), which keeps many connections busy and
hands out the first tensors early (docs/benchmarks.md, remote section).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pagefault.errors import SinkError

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_REQUEST_SIZE",
    "MIN_SLOT_BYTES",
    "Tuning",
    "auto_tuning",
    "cpu_count",
]

MiB = 1024 * 1024
DEFAULT_REQUEST_SIZE = 64 * MiB
DEFAULT_MEMORY_LIMIT = 256 * MiB
MIN_SLOT_BYTES = 1 * MiB
MAX_THREADS = 16
REMOTE_CONNECTIONS = 16
REMOTE_REQUEST_SIZE = 16 * MiB


def cpu_count() -> int:
    """CPUs this process may run on (cgroup/affinity aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Tuning:
    """Resolved knobs of one load."""

    threads: int
    request_size: int
    staging_slots: int
    slot_bytes: int


def auto_tuning(
    *,
    threads: int | None,
    request_size: int | None,
    memory_limit: int | None,
    staged: bool,
    remote: bool = False,
    mapped: bool = False,
    min_slot_bytes: int = MIN_SLOT_BYTES,
) -> Tuning:
    """Fill in unset knobs; the staging ring (2 slots per thread) fits in ``memory_limit``.

    ``min_slot_bytes`` is the smallest task the plan can make (a whole piece when verifying).
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if request_size is not None and request_size < 4096:
        raise ValueError(f"request_size must be at least 4096 bytes, got {request_size}")
    per_cpu = 1 if mapped else 2
    local_threads = min(MAX_THREADS, per_cpu * max(2, cpu_count()))
    chosen_threads = threads or (REMOTE_CONNECTIONS if remote else local_threads)
    chosen_request = request_size or (REMOTE_REQUEST_SIZE if remote else DEFAULT_REQUEST_SIZE)
    if not staged:
        return Tuning(chosen_threads, chosen_request, 0, 0)
    limit = DEFAULT_MEMORY_LIMIT if memory_limit is None else memory_limit
    slots = 2 * chosen_threads
    slot_bytes = max(min(chosen_request, limit // slots), min_slot_bytes)
    if slot_bytes * slots > limit:
        slots = max(2, limit // slot_bytes)
    if slot_bytes * slots > limit:
        raise SinkError(
            f"memory_limit={limit} bytes is too small for staging; give at least "
            f"{2 * slot_bytes} bytes"
        )
    return Tuning(min(chosen_threads, slots), slot_bytes, slots, slot_bytes)
