"""A swarm's first step on a node: the manifest, published by the origin or built here."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import pagefault
from pagefault.manifest import MANIFEST_NAME
from pagefault.swarm.config import AgentConfig
from pagefault.swarm.coordinator_client import CoordinatorClient
from pagefault.swarm.obtain import BUILT_PIECE_SIZE, obtain
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint
from pagefault.testing import HTTPOrigin


@pytest.fixture
def served(tmp_path: Path) -> Path:
    write_synthetic_checkpoint(tmp_path / "origin" / "model", SyntheticConfig(3 << 20, shards=2))
    return tmp_path / "origin"


def _no_coordinator(tmp_path: Path) -> CoordinatorClient:
    config = AgentConfig(node="n1", listen="127.0.0.1:0", data_dir=tmp_path)
    return CoordinatorClient(config, "s1", "127.0.0.1:1")


def test_a_published_manifest_with_roots_is_used_as_is(served: Path, tmp_path: Path) -> None:
    manifest = pagefault.make_piece_manifest(served / "model", piece_size=256 << 10)
    pagefault.write_piece_manifest(manifest, str(served / "model" / MANIFEST_NAME))
    with HTTPOrigin(served) as origin:
        plan = obtain(
            f"{origin.url}/model/", _no_coordinator(tmp_path), tmp_path / "s", threading.Event()
        )
    assert plan.manifest.to_json() == manifest.to_json()
    assert plan.staging is None and plan.reasons == ()
    assert plan.description is not None and plan.description.pieces is not None
    assert not (tmp_path / "s").exists(), "nothing downloaded ahead of the swarm"


def test_without_one_the_first_fetcher_downloads_hashes_and_says_so(
    served: Path, tmp_path: Path
) -> None:
    staging = tmp_path / "staging"
    with HTTPOrigin(served) as origin:
        plan = obtain(f"{origin.url}/model/", _no_coordinator(tmp_path), staging, threading.Event())
    assert plan.staging == staging
    want = pagefault.make_piece_manifest(served / "model", piece_size=BUILT_PIECE_SIZE)
    assert plan.manifest.to_json() == want.to_json()
    for file in (served / "model").iterdir():
        assert (staging / file.name).read_bytes() == file.read_bytes()
    assert any("built it from the origin" in why for why in plan.reasons)
