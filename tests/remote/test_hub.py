"""``hf://ORG/REPO[@REVISION][/PATH]`` against a loopback server speaking the Hub's API:
the revision pinned to a commit, redirects followed, the token sent to the Hub only."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import pagefault
from pagefault.errors import ConfigError, NotFound
from pagefault.testing import HubServer

from .conftest import assert_same_tensors, reference
from .test_manifests import publish

TOKEN = "hf_test_token"


@pytest.fixture
def hub_root(served_model: Path, tmp_path: Path) -> Path:
    repo = tmp_path / "hub" / "acme" / "tiny"
    shutil.copytree(served_model / "sharded", repo)
    publish(repo)
    (repo / "config.json").write_text('{"model_type": "llama"}')
    (repo / "tokenizer.json").write_text("{}")
    shutil.copytree(served_model / "single", repo / "variant")
    return tmp_path / "hub"


@pytest.fixture
def hub(hub_root: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    with HubServer(hub_root, token=TOKEN) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        yield server


def test_load_pull_and_inspect_a_hub_repository(hub: HubServer, tmp_path: Path) -> None:
    local = hub.root / "acme" / "tiny"
    for uri in (
        "hf://acme/tiny",
        "hf://acme/tiny@main/",
        f"hf://acme/tiny@{hub.commit('acme/tiny')}",
    ):
        stream = pagefault.stream(uri, cache=False)
        assert_same_tensors(dict(stream), reference(local))
        assert stream.stats.verified  # the manifest published in the repository
    assert_same_tensors(pagefault.load("hf://acme/tiny/variant"), reference(local / "variant"))
    result = pagefault.pull("hf://acme/tiny", tmp_path / "out")
    assert {"config.json", "tokenizer.json", "model.safetensors.index.json"} <= set(result.files)
    assert (tmp_path / "out" / "config.json").read_bytes() == (local / "config.json").read_bytes()
    assert (tmp_path / "out" / "variant" / "model.safetensors").exists()  # sub-directories too
    assert pagefault.inspect("hf://acme/tiny").total_bytes == pagefault.inspect(local).total_bytes


def test_the_token_goes_to_the_hub_never_to_the_cdn(hub: HubServer) -> None:
    pagefault.load("hf://acme/tiny", cache=False)
    assert hub.requests and all(had_token for _, _, had_token in hub.requests)
    assert hub.cdn.requests and hub.cdn.credentialed == 0  # bytes from the CDN, no token there


def test_missing_repository_revision_and_token(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(NotFound, match="no such repository"):
        pagefault.load("hf://acme/missing")
    with pytest.raises(NotFound, match="no such revision"):
        pagefault.load("hf://acme/tiny@v9")
    with pytest.raises(ConfigError, match="ORG/REPO"):
        pagefault.load("hf://acme")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(NotFound, match="set HF_TOKEN"):
        pagefault.load("hf://acme/tiny")
