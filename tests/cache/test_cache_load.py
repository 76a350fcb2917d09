"""Loads through the node cache: identity in every mode, warm loads free of origin bytes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import pagefault
from pagefault.cache import NodeCache, manage
from pagefault.errors import NotFound
from pagefault.testing import HTTPOrigin

from ..remote.conftest import assert_same_tensors, reference
from .conftest import cache_config


def model_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*.safetensors"))


@pytest.mark.parametrize("model", ["published", "published-blake3", "plain"])
def test_second_load_reads_no_origin_bytes(
    origin: HTTPOrigin, served: Path, node: NodeCache, model: str
) -> None:
    want = reference(served / model)
    first = pagefault.stream(origin.url + f"/{model}", cache=node)
    assert_same_tensors(dict(first), want)
    cold = origin.bytes_sent
    assert first.stats.bytes_by_source["origin"] == model_bytes(served / model)
    assert first.stats.verified is (model != "plain")

    second = pagefault.stream(origin.url + f"/{model}", cache=node)
    assert_same_tensors(dict(second), want)
    assert origin.bytes_sent == cold, "a warm load must not download model bytes"
    assert second.stats.mode == "mapped"
    assert second.stats.bytes_by_source == {
        "local": 0,
        "ram": second.stats.bytes_by_source["ram"],
        "disk": 0,
        "peers": 0,
        "origin": 0,
    }
    assert second.stats.corrupt_pieces == 0
    assert manage.verify(node).corrupt == []  # tier files re-hashed by the digest they are named by


@pytest.mark.parametrize(
    "kwargs",
    [{"mmap": False}, {"dtype": torch.float16}, {"dtype": torch.float32, "memory_limit": 8 << 20}],
)
def test_every_mode_reads_the_cache(
    origin: HTTPOrigin, served: Path, node: NodeCache, kwargs: dict[str, object]
) -> None:
    url = origin.url + "/published"
    pagefault.load(url, cache=node)
    sent = origin.bytes_sent
    got = pagefault.load(url, cache=node, **kwargs)  # type: ignore[arg-type]
    want = pagefault.load(served / "published", **kwargs)  # type: ignore[arg-type]
    assert_same_tensors(got, want)
    assert origin.bytes_sent == sent


def test_same_bytes_under_two_uris_are_stored_once(
    origin: HTTPOrigin, served: Path, node: NodeCache
) -> None:
    pagefault.load(origin.url + "/published", cache=node)
    ram = node.tiers[0]
    pieces = len(ram.scan())
    got = pagefault.load(origin.url + "/published/model.safetensors.index.json", cache=node)
    assert_same_tensors(got, reference(served / "published"))
    assert len(ram.scan()) == pieces


def test_a_changed_origin_is_loaded_afresh(served: Path, tmp_path: Path) -> None:
    node = NodeCache(cache_config(tmp_path / "cache"))
    with HTTPOrigin(served) as origin:
        url = origin.url + "/plain"
        pagefault.load(url, cache=node)
        origin.change_etag("/plain/model.safetensors")
        sent = origin.bytes_sent
        stream = pagefault.stream(url, cache=node)
        got = dict(stream)
    assert_same_tensors(got, reference(served / "plain"))
    # a new version is a new file: its pieces are fetched again (here identical, so stored once)
    assert stream.stats.bytes_by_source["origin"] > 0
    assert origin.bytes_sent > sent


def test_offline_loads_need_no_origin(served: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    with HTTPOrigin(served) as origin:
        url = origin.url + "/published"
        pagefault.load(url, cache=NodeCache(cache_config(root)))
    # the origin is gone: an offline cache still serves the model from the catalog
    got = pagefault.load(url, cache=NodeCache(cache_config(root, offline=True)))
    assert_same_tensors(got, reference(served / "published"))
    with pytest.raises((NotFound, pagefault.errors.SourceError)):
        pagefault.load(url, cache=NodeCache(cache_config(root)))


def test_disk_tier_alone_serves_and_promotes(
    origin: HTTPOrigin, served: Path, tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    pagefault.load(origin.url + "/published", cache=NodeCache(cache_config(root)))
    node = NodeCache(cache_config(root))
    for piece in node.tiers[0].scan():  # a reboot empties /dev/shm
        node.tiers[0].drop(piece.sha)
    sent = origin.bytes_sent
    stream = pagefault.stream(origin.url + "/published", cache=node)
    assert_same_tensors(dict(stream), reference(served / "published"))
    assert stream.stats.bytes_by_source["disk"] > 0
    assert origin.bytes_sent == sent
    assert len(node.tiers[0].scan()) == len(node.tiers[1].scan()), "read pieces are promoted"


def test_the_cache_can_be_bypassed(origin: HTTPOrigin, node: NodeCache) -> None:
    pagefault.load(origin.url + "/plain", cache=False)
    assert not node.tiers[0].scan()
    sent = origin.bytes_sent
    pagefault.load(origin.url + "/plain", cache=False)
    assert origin.bytes_sent > sent


def test_lost_published_digests_are_fetched_again_not_trusted(
    origin: HTTPOrigin, served: Path, node: NodeCache
) -> None:
    url = origin.url + "/published"
    pagefault.load(url, cache=node)
    shutil.rmtree(node.config.disk_dir / "files")  # the catalog's digests, gone
    stream = pagefault.stream(url, cache=node)
    assert_same_tensors(dict(stream), reference(served / "published"))
    # the manifest is read again from the origin; the pieces themselves are still cached
    assert stream.stats.bytes_by_source["origin"] == 0
    assert stream.stats.verified
