"""Fixtures for remote-origin tests: a served model directory and an S3 (moto) server."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import pagefault
from pagefault.errors import NotFound
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint
from pagefault.testing import HTTPOrigin

PIECE = 256 * 1024


@pytest.fixture(scope="session")
def served_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sharded/``: ~6 MiB in 2 shards (with index); ``single/``: one 2 MiB file."""
    root = tmp_path_factory.mktemp("origin")
    write_synthetic_checkpoint(root / "sharded", SyntheticConfig(size=6 << 20, shards=3, seed=11))
    write_synthetic_checkpoint(root / "single", SyntheticConfig(size=2 << 20, shards=1, seed=5))
    return root


@pytest.fixture
def model_copy(served_model: Path, tmp_path: Path) -> Path:
    """A private copy of the served tree that a test may tamper with."""
    return Path(shutil.copytree(served_model, tmp_path / "copy"))


@pytest.fixture
def origin(served_model: Path) -> Iterator[HTTPOrigin]:
    with HTTPOrigin(served_model) as server:
        yield server


def assert_same_tensors(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(want)
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype and got[name].shape == tensor.shape, name
        assert torch.equal(got[name].view(-1).view(torch.uint8), tensor.view(-1).view(torch.uint8))


def reference(path: Path) -> dict[str, torch.Tensor]:
    return pagefault.load(path, mmap=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Every object store is checked on the same shapes of URI: (path under the bucket, local).
LAYOUTS = [
    ("sharded/", "sharded"),
    ("sharded/model.safetensors.index.json", "sharded"),
    ("single/model.safetensors", "single/model.safetensors"),
    ("single", "single"),
]


def check_missing_objects(scheme: str) -> None:
    """A missing file, an empty prefix and a missing bucket are all ``NotFound``."""
    with pytest.raises(NotFound, match="nope.safetensors"):
        pagefault.load(f"{scheme}://models/single/nope.safetensors")
    with pytest.raises(NotFound, match="no .safetensors file"):
        pagefault.load(f"{scheme}://models/empty-prefix/")
    with pytest.raises(NotFound):
        pagefault.load(f"{scheme}://no-such-bucket/model.safetensors")
