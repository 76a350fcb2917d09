"""What a user reads when a location is wrong: the scheme, the missing part, the cause."""

from __future__ import annotations

from pathlib import Path

import pytest

import pagefault
from pagefault.errors import ConfigError, SourceError
from pagefault.testing import HTTPOrigin
from pagefault.testing.ports import free_port

from .conftest import assert_same_tensors, reference


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("ftp://x/y", "unsupported scheme 'ftp'.*s3://"),
        ("s3://", r"no bucket given \(want s3://BUCKET/PATH\)"),
        ("https:///model.safetensors", "no host given"),
        ("hf://acme", "ORG/REPO"),
    ],
)
def test_bad_locations_are_config_errors(uri: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        pagefault.inspect(uri)


def test_file_uris_are_local_paths(single_checkpoint: Path) -> None:
    assert pagefault.inspect(single_checkpoint.as_uri()).model_id == (
        pagefault.inspect(single_checkpoint).model_id
    )


def test_a_refused_connection_says_so() -> None:
    port = free_port()  # nobody listens on it
    with pytest.raises(SourceError, match="connection refused"):
        pagefault.load(f"http://127.0.0.1:{port}/model/", cache=False)


def test_s3_without_credentials_and_metadata_off_goes_unsigned(
    served_model: Path, origin: HTTPOrigin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No credential lookup, no 169.254.169.254 probe: requests carry no signature, so a
    public bucket loads (this origin plays one: path-style, bucket ``single``)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", origin.url)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    got = pagefault.load("s3://single/model.safetensors", cache=False)
    assert_same_tensors(got, reference(served_model / "single"))
    assert origin.requests and origin.credentialed == 0
