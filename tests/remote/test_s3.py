"""The real S3 client path (obstore, SigV4, path-style) against moto's S3 server on loopback."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from moto.server import ThreadedMotoServer

import pagefault
from pagefault.errors import NotFound, SourceError
from pagefault.manifest import MANIFEST_NAME
from pagefault.testing.ports import free_port

from .conftest import (
    LAYOUTS,
    PIECE,
    assert_same_tensors,
    check_published_manifest,
    reference,
)

BUCKET = "models"
POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


@pytest.fixture(scope="module")
def s3_server(served_model: Path) -> Iterator[dict[str, str]]:
    """moto on a free port; an IAM user's keys; the model uploaded multipart."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        common = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        admin = {"aws_access_key_id": "admin", "aws_secret_access_key": "admin", **common}
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="loader")
        iam.put_user_policy(UserName="loader", PolicyName="all", PolicyDocument=json.dumps(POLICY))
        key = iam.create_access_key(UserName="loader")["AccessKey"]
        s3 = boto3.client("s3", **admin)
        s3.create_bucket(Bucket=BUCKET)
        multipart = TransferConfig(multipart_threshold=1 << 20, multipart_chunksize=1 << 20)
        for path in sorted(served_model.rglob("*")):
            if path.is_file():
                name = path.relative_to(served_model).as_posix()
                s3.upload_file(str(path), BUCKET, name, Config=multipart)
        yield {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "AWS_REGION": "us-east-1",
        }
    finally:
        server.stop()


@contextmanager
def authentication_enforced(endpoint: str) -> Iterator[None]:
    """Make moto check every request's SigV4 signature (it accepts any key by default).

    Only around the tests that need it: with checks on, moto 5.2 rejected obstore's
    signed ``ListObjectsV2`` (``delimiter=%2F``) with SignatureDoesNotMatch while it
    accepted the same keys for HEAD/GET, so prefix URIs are tested with checks off.
    """
    set_auth(endpoint, "0")
    try:
        yield
    finally:
        set_auth(endpoint, "inf")


def set_auth(endpoint: str, free_actions: str) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=free_actions.encode(),
        headers={"Content-Type": "text/plain"},
        method="POST",
    )
    urllib.request.urlopen(request).close()


@pytest.fixture
def s3_env(s3_server: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.mark.parametrize(("path", "local"), LAYOUTS)
def test_s3_loads_are_byte_identical(
    s3_env: dict[str, str], served_model: Path, path: str, local: str
) -> None:
    got = pagefault.load(f"s3://models/{path}")
    assert_same_tensors(got, reference(served_model / local))


def test_signed_requests_and_wrong_credentials(
    s3_env: dict[str, str], served_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = "s3://models/single/model.safetensors"
    with authentication_enforced(s3_env["AWS_ENDPOINT_URL"]):
        assert_same_tensors(pagefault.load(uri), reference(served_model / "single"))
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        with pytest.raises(SourceError, match="credentials") as caught:
            pagefault.load(uri)
    assert "not-the-secret" not in str(caught.value)


def test_manifest_published_to_s3_is_verified(
    s3_env: dict[str, str], served_model: Path, tmp_path: Path
) -> None:
    manifest = pagefault.make_piece_manifest("s3://models/sharded/", piece_size=PIECE)
    pagefault.write_piece_manifest(manifest, f"s3://models/sharded/{MANIFEST_NAME}")
    try:
        check_published_manifest("s3", served_model, tmp_path)
    finally:
        boto3.client(
            "s3",
            endpoint_url=s3_env["AWS_ENDPOINT_URL"],
            aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        ).delete_object(Bucket=BUCKET, Key=f"sharded/{MANIFEST_NAME}")


def test_pull_of_a_prefix_brings_every_file_and_skips_unchanged_ones(
    s3_env: dict[str, str], served_model: Path, tmp_path: Path
) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_env["AWS_ENDPOINT_URL"],
        aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    for path in (served_model / "single").iterdir():
        s3.upload_file(str(path), BUCKET, f"whole/{path.name}")
    s3.put_object(Bucket=BUCKET, Key="whole/config.json", Body=b'{"a": 1}')
    s3.put_object(Bucket=BUCKET, Key="whole/tokenizer.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="whole/1_Pooling/config.json", Body=b"{}")
    first = pagefault.pull("s3://models/whole/", tmp_path / "out")
    assert {"config.json", "tokenizer.json", "model.safetensors"} <= set(first.files)
    assert (tmp_path / "out" / "1_Pooling" / "config.json").read_bytes() == b"{}"
    assert (tmp_path / "out" / "config.json").read_bytes() == b'{"a": 1}'
    second = pagefault.pull("s3://models/whole/", tmp_path / "out")
    assert second.downloaded == 0 and sorted(second.skipped) == sorted(first.files)
    s3.put_object(Bucket=BUCKET, Key="whole/config.json", Body=b'{"a": 2}')  # a new ETag
    third = pagefault.pull("s3://models/whole/", tmp_path / "out")
    assert third.downloaded == len(b'{"a": 2}') and "config.json" not in third.skipped
    assert (tmp_path / "out" / "config.json").read_bytes() == b'{"a": 2}'


def test_missing_bucket_is_named(s3_env: dict[str, str]) -> None:
    with pytest.raises(NotFound, match="bucket 'no-such-bucket' does not exist"):
        pagefault.load("s3://no-such-bucket/x/")
