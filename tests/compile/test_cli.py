"""``pagefault compile-cache``: list, inspect, push, pull and remove bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pagefault.cli import app
from pagefault.compile.bundle import digest_of, pack
from pagefault.compile.stores import DirectoryStore

runner = CliRunner()
KEY = "demo-0123456789abcdef"


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DirectoryStore:
    monkeypatch.setenv("PAGEFAULT_CACHE_DIR", str(tmp_path / "node"))
    monkeypatch.setenv("PAGEFAULT_CACHE_RAM_DIR", "off")
    monkeypatch.delenv("PAGEFAULT_COMPILE_STORE", raising=False)
    (tmp_path / "built").mkdir()
    (tmp_path / "built" / "kernel.cpp").write_text("int main() {}")
    data = pack(tmp_path / "built")
    store = DirectoryStore(tmp_path / "node" / "compile" / "bundles")
    store.put(KEY, digest_of(data), data)
    return store


def cli(*argv: str) -> dict:
    result = runner.invoke(app, ["compile-cache", *argv, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_push_rm_pull_round_trip(node: DirectoryStore, tmp_path: Path) -> None:
    shared = f"file://{tmp_path / 'shared'}"
    digest = node.latest(KEY)
    assert cli("ls")["keys"] == [
        {"key": KEY, "digest": digest, "bytes": len(node.get(KEY, digest))}
    ]
    assert cli("push", KEY, "--store", shared)["to"] == shared
    assert cli("ls", "--store", shared)["keys"][0]["digest"] == digest
    assert cli("rm", KEY)["removed"]
    assert cli("ls")["keys"] == []
    assert cli("pull", KEY, "--store", shared)["from"] == shared
    assert cli("info", KEY)["digest"] == digest


def test_errors_are_typed(node: DirectoryStore) -> None:
    missing = runner.invoke(app, ["compile-cache", "info", "nope-0", "--json"])
    assert missing.exit_code == 2 and json.loads(missing.stdout)["type"] == "NotFound"
    no_store = runner.invoke(app, ["compile-cache", "push", KEY, "--json"])
    assert json.loads(no_store.stdout)["type"] == "ConfigError"
