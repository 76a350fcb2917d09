"""Fixtures for remote-origin tests: a served model directory and an S3 (moto) server."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


def check_published_manifest(scheme: str, served_model: Path, tmp_path: Path) -> None:
    """With a manifest published beside ``sharded/``, loads and pulls are verified and exact."""
    stream = pagefault.stream(f"{scheme}://models/sharded")
    got = dict(stream)
    assert stream.stats.verified
    assert_same_tensors(got, reference(served_model / "sharded"))
    result = pagefault.pull(f"{scheme}://models/sharded", tmp_path / "pulled")
    assert result.verified and pagefault.verify(tmp_path / "pulled").ok


@contextmanager
def emulator(
    command: list[str], log: Path, *, ready: Callable[[], object], name: str, timeout: float
) -> Iterator[None]:
    """Run an emulator (output to ``log``) until the block ends, once ``ready()`` succeeds."""
    with log.open("wb") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    try:
        _wait_ready(server, ready, log, name, timeout)
        yield
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_ready(
    server: subprocess.Popen[bytes],
    ready: Callable[[], object],
    log: Path,
    name: str,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text(errors='replace')}")
        try:
            ready()
            return
        except OSError:  # not listening yet (urllib's URLError is an OSError too)
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not start: {log.read_text(errors='replace')}")
