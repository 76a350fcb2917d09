"""A model is described at the origin once per fleet start, and what a node takes from the
coordinator is checked as if the origin had sent it."""

from __future__ import annotations

import base64
import dataclasses
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import pagefault
from pagefault.errors import ControlError, FormatError, IntegrityError
from pagefault.manifest import MANIFEST_NAME
from pagefault.sources.describe import ModelDescription, describe
from pagefault.swarm.config import AgentConfig
from pagefault.swarm.coordinator_client import CoordinatorClient
from pagefault.swarm.description import described, share, unshare
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint
from pagefault.testing import HTTPOrigin

from .conftest import TOKEN


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """A two-shard model with an index and a published piece manifest."""
    model = tmp_path / "origin" / "model"
    write_synthetic_checkpoint(model, SyntheticConfig(2 << 20, shards=2))
    manifest = pagefault.make_piece_manifest(model, piece_size=256 << 10)
    pagefault.write_piece_manifest(manifest, str(model / MANIFEST_NAME))
    return tmp_path / "origin"


@pytest.fixture
def origin(served: Path) -> Iterator[HTTPOrigin]:
    with HTTPOrigin(served) as running:
        yield running


def _client(node: str, coordinator: str | None, tmp_path: Path) -> CoordinatorClient:
    config = AgentConfig(
        node=node, listen="127.0.0.1:0", data_dir=tmp_path, coordinator=coordinator, token=TOKEN
    )
    return CoordinatorClient(config, "s1", "127.0.0.1:1")


def test_a_description_shared_and_taken_back_is_the_origins(origin: HTTPOrigin) -> None:
    uri = f"{origin.url}/model/"
    original = describe(uri)
    assert original.index is not None and original.pieces is not None
    assert unshare(share(original), uri, sender="test") == original


def test_a_fleet_starting_at_once_describes_the_origin_once(
    origin: HTTPOrigin, coordinator: str, tmp_path: Path
) -> None:
    uri = f"{origin.url}/model/"
    alone = describe(uri)
    one_describe = sorted(origin.requests)
    origin.reset_counters()
    nodes = [_client(f"n{i}", coordinator, tmp_path) for i in range(6)]
    with ThreadPoolExecutor(len(nodes)) as pool:
        found = list(pool.map(lambda node: described(uri, node, threading.Event()), nodes))
    assert all(description == alone for description in found)
    assert sorted(origin.requests) == one_describe  # six nodes, the requests of one


def test_without_a_coordinator_answering_a_node_describes_the_origin_itself(
    origin: HTTPOrigin, tmp_path: Path
) -> None:
    uri = f"{origin.url}/model/"
    unreachable = _client("n1", "http://127.0.0.1:1", tmp_path)
    assert described(uri, unreachable, threading.Event()) == describe(uri)
    assert unreachable.error is not None  # and the outage is kept, for the stall's reason


def _tampered(description: ModelDescription, **changes: object) -> ModelDescription:
    return dataclasses.replace(description, **changes)  # type: ignore[arg-type]


def test_a_shared_description_that_does_not_hold_is_refused_naming_what(
    origin: HTTPOrigin,
) -> None:
    uri = f"{origin.url}/model/"
    good = describe(uri)
    assert good.index is not None
    shared = share(good)
    with pytest.raises(ControlError, match="it describes"):
        unshare(shared, uri + "other/", sender="swarm s1")
    escaping = shared.model_copy(
        update={"files": [shared.files[0].model_copy(update={"name": "../x.safetensors"})]}
    )
    with pytest.raises(FormatError, match=r"files\[0\].*not a plain"):
        unshare(escaping, uri, sender="swarm s1")
    with pytest.raises(FormatError, match="not its index's shards"):
        unshare(shared.model_copy(update={"files": shared.files[::-1]}), uri, sender="s")
    with pytest.raises(FormatError, match="index: not base64"):
        unshare(shared.model_copy(update={"index": "@@@"}), uri, sender="s")
    other_index = good.index.replace(b"weight_map", b"weight_map", 1) + b" "
    forged = share(_tampered(good, index=other_index))
    with pytest.raises(IntegrityError, match="digest"):
        unshare(forged, uri, sender="swarm s1")
    bad_pieces = shared.model_copy(update={"pieces": base64.b64encode(b"{}").decode()})
    with pytest.raises(FormatError, match="not a piece manifest"):
        unshare(bad_pieces, uri, sender="swarm s1")


def test_an_unusable_shared_description_is_described_again_at_the_origin(
    origin: HTTPOrigin, coordinator: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uri = f"{origin.url}/model/"
    good = describe(uri)
    first = _client("n1", coordinator, tmp_path)
    turn = first.describer_turn()
    assert turn is not None and turn.describe
    first.share_description(share(_tampered(good, index=(good.index or b"") + b" ")))
    with caplog.at_level("WARNING", logger="pagefault.agent"):
        again = described(uri, _client("n2", coordinator, tmp_path), threading.Event())
    assert again == good
    assert "the shared description is unusable" in caplog.text
