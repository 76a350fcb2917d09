"""Fixtures for node-cache tests: served models (with and without a piece manifest), caches."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import pagefault
from pagefault.cache import CacheConfig, NodeCache
from pagefault.manifest import MANIFEST_NAME
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint
from pagefault.testing import HTTPOrigin

PIECE = 256 * 1024


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``published/``: ~3 MiB, 2 shards, 256 KiB-piece manifest; ``published-blake3/``: the
    same with BLAKE3 digests; ``plain/``: ~2 MiB, none."""
    root = tmp_path_factory.mktemp("cache-origin")
    published = root / "published"
    write_synthetic_checkpoint(published, SyntheticConfig(size=3 << 20, shards=2, seed=21))
    manifest = pagefault.make_piece_manifest(published, piece_size=PIECE)
    pagefault.write_piece_manifest(manifest, str(published / MANIFEST_NAME))
    blake3_dir = root / "published-blake3"  # same shards, a BLAKE3 manifest (as saves write)
    shutil.copytree(published, blake3_dir)
    manifest = pagefault.make_piece_manifest(blake3_dir, piece_size=PIECE, piece_hash="blake3")
    pagefault.write_piece_manifest(manifest, str(blake3_dir / MANIFEST_NAME))
    write_synthetic_checkpoint(root / "plain", SyntheticConfig(size=2 << 20, shards=1, seed=22))
    return root


@pytest.fixture
def origin(served: Path) -> Iterator[HTTPOrigin]:
    with HTTPOrigin(served) as server:
        yield server


def cache_config(root: Path, **overrides: object) -> CacheConfig:
    """A cache under ``root`` with 256 KiB pieces for origins without a manifest."""
    settings: dict[str, object] = {
        "disk_dir": root / "disk",
        "ram_dir": root / "ram",
        "disk_capacity": 1 << 30,
        "ram_capacity": 1 << 30,
        "piece_size": PIECE,
    }
    return CacheConfig(**(settings | overrides))  # type: ignore[arg-type]


@pytest.fixture
def node(tmp_path: Path) -> NodeCache:
    return NodeCache(cache_config(tmp_path / "cache"))
