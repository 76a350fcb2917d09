"""Loading over HTTP from the project's own origin: identity, streaming, faults, versions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import pagefault
from pagefault.errors import IntegrityError, NotFound, SourceError
from pagefault.testing import FaultPlan, HTTPOrigin

from .conftest import assert_same_tensors, reference


@pytest.mark.parametrize(
    ("path", "local"),
    [
        ("/single/model.safetensors", "single/model.safetensors"),
        ("/sharded/model.safetensors.index.json", "sharded"),
        ("/sharded/", "sharded"),
        ("/sharded", "sharded"),
        ("/single", "single"),
    ],
)
def test_http_loads_are_byte_identical(
    origin: HTTPOrigin, served_model: Path, path: str, local: str
) -> None:
    got = pagefault.load(origin.url + path)
    assert_same_tensors(got, reference(served_model / local))
    directory = served_model / local.split("/", maxsplit=1)[0]
    shards = list(directory.glob("*.safetensors"))
    file_bytes = sum(p.stat().st_size for p in directory.iterdir())
    # each byte once, plus the first 256 KiB of each shard, read with its header
    assert origin.bytes_sent <= file_bytes + len(shards) * (256 << 10)


def test_dtype_conversion_with_bounded_staging(origin: HTTPOrigin, served_model: Path) -> None:
    got = pagefault.load(origin.url + "/sharded", dtype=torch.float16, memory_limit=4 << 20)
    want = reference(served_model / "sharded")
    for name, tensor in want.items():
        expected = tensor.to(torch.float16) if tensor.is_floating_point() else tensor
        assert torch.equal(got[name], expected), name


def test_first_tensor_arrives_before_the_download_finishes(served_model: Path) -> None:
    total = sum(p.stat().st_size for p in (served_model / "sharded").glob("*.safetensors"))
    with HTTPOrigin(served_model, bandwidth=4e6) as origin:
        stream = pagefault.stream(
            origin.url + "/sharded", threads=1, request_size=256 << 10, cache=False
        )
        name, _ = next(iter(stream))
        sent_at_first = origin.bytes_sent
        rest = dict(stream)
    assert name not in rest and rest
    assert sent_at_first < total / 2


def test_faults_are_retried_and_resumed(served_model: Path) -> None:
    plan = FaultPlan(reset_rate=0.1, truncate_rate=0.05, error_rate=0.08, seed=1)
    with HTTPOrigin(served_model, faults=plan) as origin:
        got = pagefault.load(origin.url + "/sharded", request_size=128 << 10, cache=False)
        statuses = {status for _, _, status in origin.requests}
    assert_same_tensors(got, reference(served_model / "sharded"))
    assert statuses & {500, 503, 429}, "the fault plan should have produced error statuses"


def test_slow_first_byte_still_loads(served_model: Path) -> None:
    with HTTPOrigin(served_model, faults=FaultPlan(first_byte_delay=0.05)) as origin:
        got = pagefault.load(origin.url + "/single")
    assert_same_tensors(got, reference(served_model / "single"))


def test_changed_etag_mid_load_aborts(served_model: Path) -> None:
    last = sorted((served_model / "sharded").glob("*.safetensors"))[-1]
    shard = f"/sharded/{last.name}"
    with HTTPOrigin(served_model, bandwidth=2e6) as origin:
        stream = pagefault.stream(
            origin.url + "/sharded", threads=1, request_size=256 << 10, cache=False
        )
        next(iter(stream))
        origin.change_etag(shard)
        with pytest.raises(IntegrityError, match="changed during the load"):
            dict(stream)


def test_missing_object_is_not_found(origin: HTTPOrigin) -> None:
    with pytest.raises(NotFound, match="nope.safetensors"):
        pagefault.load(origin.url + "/nope.safetensors")
    with pytest.raises(NotFound, match="no .safetensors file"):
        pagefault.load(origin.url + "/empty-prefix/")


def test_persistent_failure_becomes_source_error(served_model: Path) -> None:
    failing = HTTPOrigin(served_model, faults=FaultPlan(reset_rate=1.0))
    with failing as origin, pytest.raises(SourceError, match="model.safetensors"):
        pagefault.load(origin.url + "/single/model.safetensors")
