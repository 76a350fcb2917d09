"""The real Azure Blob client path (obstore, SharedKey signing) against Azurite on loopback.

Azurite is an npm package (``npm install -g azurite``); without ``azurite-blob`` on
``PATH`` every test here is skipped. pagefault reaches it through obstore's emulator mode:
``AZURE_STORAGE_USE_EMULATOR=true`` (Azurite's well-known dev account and key) and
``AZURITE_BLOB_STORAGE_URL``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import socket
import urllib.request
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import obstore
import pytest
from obstore.store import AzureStore

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

CONTAINER = "models"
# Azurite's well-known development account (public, documented by Microsoft).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def create_container(endpoint: str, name: str) -> None:
    """Create Container, signed with SharedKey (obstore has no call for it)."""
    headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
    canonical = "".join(f"{key}:{value}\n" for key, value in sorted(headers.items()))
    # VERB, then 11 standard headers (only Content-Type set), then x-ms-*, then the resource.
    string_to_sign = "PUT\n\n\n\n\ntext/plain\n\n\n\n\n\n\n" + canonical
    string_to_sign += f"/{ACCOUNT}/{ACCOUNT}/{name}\nrestype:container"
    digest = hmac.new(base64.b64decode(ACCOUNT_KEY), string_to_sign.encode(), hashlib.sha256)
    signature = base64.b64encode(digest.digest()).decode()
    request = urllib.request.Request(
        f"{endpoint}/{ACCOUNT}/{name}?restype=container",
        data=b"",
        method="PUT",
        headers={
            **headers,
            "Content-Type": "text/plain",
            "Authorization": f"SharedKey {ACCOUNT}:{signature}",
        },
    )
    urllib.request.urlopen(request).close()


def admin_store(endpoint: str) -> AzureStore:
    """The test's own client for uploads and clean-up, configured explicitly (no env)."""
    return AzureStore(
        CONTAINER,
        account_name=ACCOUNT,
        access_key=ACCOUNT_KEY,
        endpoint=f"{endpoint}/{ACCOUNT}",
        client_options={"allow_http": True},
    )


@pytest.fixture(scope="module")
def azurite(served_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service in memory on a free port, the model uploaded; yields its URL."""
    binary = shutil.which("azurite-blob")
    if binary is None:
        pytest.skip("no Azurite: npm install -g azurite")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("azurite") / "server.log"
    command = [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port)]
    command += ["--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck"]
    with emulator(
        command,
        log,
        ready=lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close(),
        name="Azurite",
        timeout=30,
    ):
        create_container(endpoint, CONTAINER)
        store = admin_store(endpoint)
        for path in sorted(served_model.rglob("*")):
            if path.is_file():
                obstore.put(store, path.relative_to(served_model).as_posix(), path)
        yield endpoint


@pytest.fixture
def azure_env(azurite: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in [name for name in os.environ if name.startswith("AZURE_")]:
        monkeypatch.delenv(name)  # a developer's real account must not leak in
    monkeypatch.setenv("AZURE_STORAGE_USE_EMULATOR", "true")
    monkeypatch.setenv("AZURITE_BLOB_STORAGE_URL", azurite)
    return azurite


@pytest.mark.parametrize(("path", "local"), LAYOUTS)
def test_azure_loads_are_byte_identical(
    azure_env: str, served_model: Path, path: str, local: str
) -> None:
    uri = f"az://models/{path}"
    assert_same_tensors(pagefault.load(uri), reference(served_model / local))


def test_wrong_account_key_is_refused(
    azure_env: str, served_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = base64.b64encode(b"not-the-key" * 6).decode()
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", wrong)
    with pytest.raises(SourceError, match="credentials") as caught:
        pagefault.load("az://models/single/model.safetensors")
    assert wrong not in str(caught.value)


def test_missing_object_is_not_found(azure_env: str) -> None:
    check_missing_objects("az")


def test_manifest_published_to_azure_is_verified(
    azure_env: str, served_model: Path, tmp_path: Path
) -> None:
    manifest = pagefault.make_piece_manifest("az://models/sharded/", piece_size=PIECE)
    pagefault.write_piece_manifest(manifest, f"az://models/sharded/{MANIFEST_NAME}")
    try:
        check_published_manifest("az", served_model, tmp_path)
    finally:
        obstore.delete(admin_store(azure_env), f"sharded/{MANIFEST_NAME}")
