"""Capacity under churn: least recently used pieces go; pinned and in-use models stay."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import pagefault
from pagefault.cache import NodeCache, manage
from pagefault.cache.tier import PieceTier
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint
from pagefault.testing import HTTPOrigin

from ..remote.conftest import assert_same_tensors, reference
from .conftest import cache_config

MODELS = 6


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six different small models (~6 MB each): together twice what the caches below hold."""
    root = tmp_path_factory.mktemp("many")
    for index in range(MODELS):
        config = SyntheticConfig(size=1 << 20, shards=1, seed=100 + index)
        write_synthetic_checkpoint(root / f"m{index}", config)
    return root


def used(tier: PieceTier) -> int:
    return sum(p.size for p in tier.scan())


def small_cache(root: Path, many: Path) -> NodeCache:
    """Room for three and a half of the models."""
    capacity = int(3.5 * (many / "m0" / "model.safetensors").stat().st_size)
    return NodeCache(cache_config(root, ram_capacity=capacity, disk_capacity=capacity))


def test_capacity_holds_under_churn(many: Path, tmp_path: Path) -> None:
    node = small_cache(tmp_path / "cache", many)
    with HTTPOrigin(many) as origin:
        for round_ in range(2):
            for index in range(MODELS):
                got = pagefault.load(origin.url + f"/m{index}", cache=node)
                assert_same_tensors(got, reference(many / f"m{index}"))
                for tier in node.tiers:
                    assert used(tier) <= tier.capacity, (round_, index, tier.name)
    assert not manage.verify(node).corrupt


def test_least_recently_used_goes_first(many: Path, tmp_path: Path) -> None:
    node = small_cache(tmp_path / "cache", many)
    with HTTPOrigin(many) as origin:
        urls = [origin.url + f"/m{index}" for index in range(3)]
        for url in [*urls, urls[0]]:  # m0 is used again: m1 is now the oldest
            pagefault.load(url, cache=node)
        newest = origin.url + "/m3"
        pagefault.load(newest, cache=node)
        cached = {e.uri: e.cached["ram"] for e in manage.entries(node)}
    assert cached[urls[0]] > 0 and cached[newest] > 0
    assert cached[urls[1]] < cached[urls[0]], "the least recently used model went first"


def test_pinned_models_are_never_evicted(many: Path, tmp_path: Path) -> None:
    node = small_cache(tmp_path / "cache", many)
    with HTTPOrigin(many) as origin:
        pinned = origin.url + "/m0"
        manage.prefetch(node, pinned)
        manage.pin(node, pinned)
        full = manage.entry(node, pinned).cached
        for index in range(1, MODELS):
            pagefault.load(origin.url + f"/m{index}", cache=node)
        assert manage.entry(node, pinned).cached == full
        sent = origin.bytes_sent
        pagefault.load(pinned, cache=node)
        assert origin.bytes_sent == sent


def test_a_model_being_read_is_never_evicted(many: Path, tmp_path: Path) -> None:
    node = small_cache(tmp_path / "cache", many)
    with HTTPOrigin(many) as origin:
        reading = origin.url + "/m0"
        pagefault.load(reading, cache=node)
        full = manage.entry(node, reading).cached
        with pagefault.stream(reading, cache=node) as stream:  # holds a lease while open
            for index in range(1, MODELS):
                pagefault.load(origin.url + f"/m{index}", cache=node)
            assert manage.entry(node, reading).cached == full
            with pytest.raises(pagefault.errors.CacheError, match="being loaded"):
                manage.evict(node, reading)
            assert_same_tensors(dict(stream), reference(many / "m0"))
        manage.evict(node, reading)  # released: now it may go
        assert manage.entry(node, origin.url + "/m5").cached["ram"] > 0


def test_a_cache_full_of_pinned_models_is_bypassed_with_a_warning(
    many: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node = small_cache(tmp_path / "cache", many)
    with HTTPOrigin(many) as origin:
        for index in range(3):  # three of the three and a half models' room, pinned
            manage.prefetch(node, origin.url + f"/m{index}")
            manage.pin(node, origin.url + f"/m{index}")
        pinned = {e.uri: e.cached for e in manage.entries(node)}
        with caplog.at_level(logging.WARNING, logger="pagefault.cache"):
            stream = pagefault.stream(origin.url + "/m4", cache=node)
            assert_same_tensors(dict(stream), reference(many / "m4"))
    assert "is full; pieces bypass it" in caplog.text
    assert stream.stats.bytes_by_source["origin"] >= stream.stats.bytes
    assert {e.uri: e.cached for e in manage.entries(node) if e.uri in pinned} == pinned
