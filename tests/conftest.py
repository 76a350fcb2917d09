from __future__ import annotations

from pathlib import Path

import pytest

from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint


@pytest.fixture(scope="session")
def sharded_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~24 MiB, 3-shard Llama-like checkpoint; returns its index path."""
    directory = tmp_path_factory.mktemp("sharded")
    return write_synthetic_checkpoint(directory, SyntheticConfig(size=24 << 20, shards=3, seed=7))


@pytest.fixture(scope="session")
def single_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("single")
    return write_synthetic_checkpoint(directory, SyntheticConfig(size=8 << 20, shards=1, seed=3))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doctor_record: Path) -> Path:
    """Every test gets its own empty node cache (never the user's ~/.cache or /dev/shm)."""
    root = tmp_path / "node-cache"
    monkeypatch.setenv("PAGEFAULT_CONFIG", str(root / "absent.toml"))
    monkeypatch.setenv("PAGEFAULT_CACHE_DIR", str(root / "disk"))
    monkeypatch.setenv("PAGEFAULT_CACHE_RAM_DIR", str(root / "ram"))
    monkeypatch.setenv("PAGEFAULT_DOCTOR_RECORD", str(doctor_record))
    return root


@pytest.fixture(scope="session")
def doctor_record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One doctor record for the session: loads asked for their bottleneck measure the
    node once, not once per test."""
    return tmp_path_factory.mktemp("doctor") / "record.json"
