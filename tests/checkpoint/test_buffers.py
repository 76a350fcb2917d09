"""Staging pool policy: reuse idle buffers, respect the budget, wait for busy ones."""

from __future__ import annotations

import threading
import time

import pytest

from pagefault.checkpoint.buffers import StagingPool
from pagefault.errors import CheckpointError

MiB = 1 << 20


def test_reuses_an_idle_buffer() -> None:
    pool = StagingPool()
    first, _ = pool.acquire(3 * MiB, pinned=False)
    first.view(0, 4)[:] = b"abcd"
    pool.release(first)
    again, waited = pool.acquire(2 * MiB, pinned=False, budget=3 * MiB)
    assert again is first and waited >= 0
    assert bytes(again.view(0, 4)) == b"abcd"  # same memory, already resident
    assert pool.held_bytes == 3 * MiB


def test_replaces_an_idle_buffer_that_is_too_small() -> None:
    pool = StagingPool()
    small, _ = pool.acquire(1 * MiB, pinned=False)
    pool.release(small)
    bigger, _ = pool.acquire(2 * MiB, pinned=False)
    assert bigger is not small and bigger.capacity == 2 * MiB
    assert pool.held_bytes == 2 * MiB


def test_snapshot_larger_than_budget_fails_at_once() -> None:
    with pytest.raises(CheckpointError, match=r"staging_budget is 1048576.*at least 2097152"):
        StagingPool().acquire(2 * MiB, pinned=False, budget=1 * MiB)


def test_budget_for_two_lets_two_saves_hold_buffers() -> None:
    pool = StagingPool()
    a, _ = pool.acquire(MiB, pinned=False, budget=2 * MiB)
    b, _ = pool.acquire(MiB, pinned=False, budget=2 * MiB)
    assert a is not b and pool.held_bytes == 2 * MiB


def test_default_budget_waits_for_the_busy_buffer() -> None:
    pool = StagingPool()
    busy, _ = pool.acquire(MiB, pinned=False)
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.append(pool.acquire(MiB, pinned=False)[0]))
    thread.start()
    deadline = time.monotonic() + 10
    while pool.waiting == 0 and time.monotonic() < deadline:
        thread.join(0.001)
    assert pool.waiting == 1 and not got  # blocked: the budget holds one snapshot
    pool.release(busy)
    thread.join(10)
    assert got == [busy]


def test_clear_frees_idle_buffers() -> None:
    pool = StagingPool()
    buffer, _ = pool.acquire(MiB, pinned=False)
    pool.release(buffer)
    assert pool.clear() == MiB and pool.held_bytes == 0


def test_reserve_prepares_a_buffer_the_next_save_reuses() -> None:
    pool = StagingPool()
    pool.reserve(2 * MiB)
    assert pool.held_bytes == 2 * MiB
    buffer, _ = pool.acquire(2 * MiB, pinned=False)
    assert buffer.capacity == 2 * MiB and pool.held_bytes == 2 * MiB
    assert bytes(buffer.view(0, 8)) == bytes(8)  # faulted in, zero-filled
