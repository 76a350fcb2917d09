"""Saving to S3 (moto's server on loopback, path-style, plain HTTP): real uploads, no mocks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import pagefault
from pagefault.checkpoint.plan import INDEX_NAME
from pagefault.errors import CheckpointError, ConfigError
from pagefault.manifest import MANIFEST_NAME
from pagefault.testing.ports import free_port
from tests.helpers import random_tensor, same_bytes, verify_manifest

moto_server = pytest.importorskip("moto.server")
obstore = pytest.importorskip("obstore")
boto3 = pytest.importorskip("boto3")

BUCKET = "ckpts"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    client.create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture(autouse=True)
def s3_environment(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials from the environment, as for loads: the one rule for both."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def options(endpoint: str) -> dict[str, object]:
    return {
        "endpoint": endpoint,
        "region": "us-east-1",
        "access_key_id": "test",
        "secret_access_key": "test",
        "virtual_hosted_style_request": False,
        "client_options": {"allow_http": True},
    }


def download(endpoint: str, prefix: str, target: Path) -> list[str]:
    store = obstore.store.from_url(f"s3://{BUCKET}/{prefix}", **options(endpoint))
    names = sorted(meta["path"] for batch in obstore.list(store) for meta in batch)
    target.mkdir()
    for name in names:
        (target / name).write_bytes(bytes(obstore.get(store, name).bytes()))
    return names


def test_save_to_s3_round_trips(s3_endpoint: str, tmp_path: Path) -> None:
    state = {
        "embed": random_tensor(torch.bfloat16, (4096, 3000), 1),  # 24.6 MB: two 16 MiB parts
        "norm": random_tensor(torch.float32, (3000,), 2),
        "odd": random_tensor(torch.int8, (7, 3), 3),
    }
    handle = pagefault.save(
        state,
        f"s3://{BUCKET}/run1/step-10",
        max_shard_size=4096 * 3000 * 2,
    )
    stats = handle.wait(timeout=120)
    assert stats.files == 2 and handle.location == f"s3://{BUCKET}/run1/step-10"
    names = download(s3_endpoint, "run1/step-10", tmp_path / "copy")
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert names == sorted([*shards, INDEX_NAME, MANIFEST_NAME])
    assert sorted(verify_manifest(tmp_path / "copy")) == sorted([*shards, INDEX_NAME])
    loaded = pagefault.load(tmp_path / "copy")
    assert all(same_bytes(loaded[n], t) for n, t in state.items())
    assert json.loads((tmp_path / "copy" / INDEX_NAME).read_text())["weight_map"]["odd"]


def test_overwriting_a_prefix_unpublishes_the_old_index_first(
    s3_endpoint: str, tmp_path: Path
) -> None:
    uri = f"s3://{BUCKET}/run2"
    first = {"w": random_tensor(torch.float32, (100, 100), 4)}
    pagefault.save(first, uri).wait(timeout=120)
    second = {"w": random_tensor(torch.float32, (100, 100), 5), "b": torch.ones(3)}
    pagefault.save(second, uri, storage_options={"region": "us-east-1"}).wait(timeout=120)
    download(s3_endpoint, "run2", tmp_path / "copy")
    loaded = pagefault.load(tmp_path / "copy")
    assert set(loaded) == {"w", "b"} and same_bytes(loaded["w"], second["w"])


def test_unreachable_bucket_fails_with_checkpoint_error(s3_endpoint: str) -> None:
    with pytest.raises(CheckpointError, match="no-such-bucket"):
        pagefault.save({"w": torch.ones(4)}, "s3://no-such-bucket/x").wait(timeout=120)


def test_credentials_as_arguments_are_refused(s3_endpoint: str) -> None:
    with pytest.raises(ConfigError, match="secret_access_key.*environment"):
        pagefault.save(
            {"w": torch.ones(4)}, f"s3://{BUCKET}/x", storage_options=options(s3_endpoint)
        )
