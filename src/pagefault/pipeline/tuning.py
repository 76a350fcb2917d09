"""Defaults for threads, request size and staging memory, and how they are derived.

Measured on the 2-core development VM (docs/benchmarks.md). Local loads run one thread
per usable CPU (at least 2, at most 16), whether they fault file pages in (mapped,
``MADV_POPULATE_READ``) or read into memory (the private arena, ``load_into``, CUDA
staging). Mapped: 4 threads on 2 cores were slower cold (1.8-2.7 s vs 1.5-2.1 s for
4.3 GB). Reads into memory: in two sets of five rounds with every variant in every
position of a round (2026-11-30, session 9), 2 threads beat 4 hot (medians 0.56 / 0.55 s
vs 1.29 / 1.53 s for 4.3 GB; the raw 2-thread limit 0.45 s) and cold (2.53 / 2.60 s vs
3.09 / 2.72 s). More threads than cores fight over faulting fresh memory, which is what
a private load spends most of its time on here. (Session 8 had chosen 4 from rounds in
shuffled order, which on this VM's memory — its speed swings with what the previous
process freed, and when — had favoured whichever ran later.)

A cold load into reserved huge pages (the pool, ``pipeline/hugetlb.py``) leaves one
CPU to the read-ahead thread, which then does the page-cache allocation and I/O
submission for the whole model: on 2 CPUs, 1 reader + read-ahead beat 2 readers +
read-ahead in 7 of 7 side-by-side pairs (1.9-2.6 s vs 2.2-3.4 s for 4.27 GB, either
order). Not when the arena is ordinary memory: faulting it in is then the readers' main
work, and 2 readers were faster (medians 2.5 vs 3.0 s, 6 pairs).

Requests are 64 MiB: on a cold page cache 2 threads x 16 MiB reads took 6.8 s for
4.3 GB where 2 x 64 MiB took 3.9 s (the device wants large requests in flight); hot,
the two sizes were equal.

Remote origins are latency- and per-connection-bound instead: the default is 16
concurrent ranged GETs of 16 MiB (one piece), which keeps many connections busy and
hands out the first tensors early (docs/benchmarks.md, remote section).
"""

from __future__ import annotations

from dataclasses import dataclass

from pagefault.errors import ConfigError, SinkError
from pagefault.pieces.engine import check_threads
from pagefault.pieces.models import REMOTE_CONNECTIONS  # one value for pulls and loads
from pagefault.system.machine import cpu_count

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_REQUEST_SIZE",
    "MIN_SLOT_BYTES",
    "Tuning",
    "auto_tuning",
]

MiB = 1024 * 1024
DEFAULT_REQUEST_SIZE = 64 * MiB
DEFAULT_MEMORY_LIMIT = 256 * MiB
MIN_SLOT_BYTES = 1 * MiB
MAX_THREADS = 16

REMOTE_REQUEST_SIZE = 16 * MiB
# Sources that fill over time (the swarm): a tensor is handed out when its whole request
# is in, so requests stay small (64 MiB swarmed at 25 Mbit/s: first tensor at 52% of the
# load with 16 MiB requests; see docs/benchmarks.md)
STREAMING_REQUEST_SIZE = 2 * MiB
# ... and few readers: the swarm delivers pieces in order, so more waiters only cost CPU
# (16 loaders x 16 threads long-polling their agents kept a 2-CPU testbed busy)
STREAMING_THREADS = 4


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
    spare_cpu: bool = False,
    min_slot_bytes: int = MIN_SLOT_BYTES,
) -> Tuning:
    """Fill in unset knobs; the staging ring (2 slots per thread) fits in ``memory_limit``.

    ``spare_cpu``: a local load leaves one CPU to its read-ahead thread.
    ``min_slot_bytes`` is the smallest task the plan can make (a whole piece when verifying).
    """
    check_threads(threads)
    if request_size is not None and request_size < 4096:
        raise ConfigError(f"request_size must be at least 4096 bytes, got {request_size}")
    local_threads = min(MAX_THREADS, max(1, cpu_count() - 1) if spare_cpu else max(2, cpu_count()))
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
