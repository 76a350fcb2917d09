"""Several processes on one node: one origin fetch per piece; SIGKILL never corrupts the cache."""

from __future__ import annotations

import multiprocessing
import random
import time
from pathlib import Path

import pytest

import pagefault
from pagefault.cache import NodeCache, manage
from pagefault.testing import HTTPOrigin

from ..remote.conftest import assert_same_tensors, reference
from .conftest import cache_config
from .workers import load_and_digest, load_until_killed, tensors_digest

PROCESSES = 4
KILLS = 20


@pytest.fixture(scope="module")
def context() -> multiprocessing.context.ForkServerContext:
    """A fork server that has imported pagefault once, so each child starts in milliseconds."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "pagefault", "tests.cache.workers"])
    return ctx


def test_processes_started_together_fetch_each_piece_once(
    served: Path, tmp_path: Path, context: multiprocessing.context.ForkServerContext
) -> None:
    size = sum(p.stat().st_size for p in (served / "published").iterdir())
    root = str(tmp_path / "cache")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    with HTTPOrigin(served, bandwidth=20e6) as origin:
        url = origin.url + "/published"
        children = [
            context.Process(target=load_and_digest, args=(url, root, barrier, results))
            for _ in range(PROCESSES)
        ]
        for child in children:
            child.start()
        outcomes = [results.get(timeout=120) for _ in children]
        for child in children:
            child.join(timeout=30)
        egress = origin.bytes_sent
    assert all(child.exitcode == 0 for child in children)
    want = tensors_digest(reference(served / "published"))
    assert {digest for digest, _ in outcomes} == {want}, "every process got identical tensors"
    assert egress <= 1.05 * size, f"origin sent {egress} bytes for a {size}-byte model"
    fetched = sum(stats["origin"] for _, stats in outcomes)
    assert fetched == sum(p.stat().st_size for p in (served / "published").glob("*.safetensors"))


def test_sigkill_during_fill_never_leaves_a_corrupt_entry(
    served: Path, tmp_path: Path, context: multiprocessing.context.ForkServerContext
) -> None:
    root = tmp_path / "cache"
    total = sum(p.stat().st_size for p in (served / "published").glob("*.safetensors"))
    rng = random.Random(7)
    with HTTPOrigin(served, bandwidth=8e6) as origin:
        url = origin.url + "/published"
        for _ in range(KILLS):
            node = NodeCache(cache_config(root))
            for record in manage.entries(node):  # start each round with part of it cached
                if rng.random() < 0.5:
                    manage.evict(node, record.uri)
            started = context.Event()
            child = context.Process(target=load_until_killed, args=(url, str(root), started))
            before = origin.bytes_sent
            child.start()
            assert started.wait(60)
            point = rng.uniform(0.0, 1.0) * total
            while origin.bytes_sent - before < point and child.is_alive():
                time.sleep(0.001)
            child.kill()
            child.join()
            result = manage.verify(node)
            assert not result.corrupt, f"a killed loader left corrupt pieces: {result.corrupt}"
        node = NodeCache(cache_config(root))
        manage.gc(node)
        got = pagefault.load(url, cache=node)
    assert_same_tensors(got, reference(served / "published"))
    assert not list(root.rglob("*.tmp")), "gc removed what the killed writers left"
