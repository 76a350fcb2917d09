"""Piece manifests end to end: build, publish, verified loads, tampering, verify, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import pagefault
from pagefault.cli import app
from pagefault.errors import IntegrityError, NotFound
from pagefault.manifest import MANIFEST_NAME, PieceManifest
from pagefault.testing import HTTPOrigin

from ..helpers import flip_byte
from .conftest import PIECE, assert_same_tensors, reference


def publish(directory: Path) -> PieceManifest:
    manifest = pagefault.make_piece_manifest(directory, piece_size=PIECE)
    pagefault.write_piece_manifest(manifest, directory / MANIFEST_NAME)
    return manifest


def test_manifest_covers_shards_and_index(model_copy: Path) -> None:
    manifest = publish(model_copy / "sharded")
    names = {f.name for f in manifest.files}
    assert "model.safetensors.index.json" in names
    assert {p.name for p in (model_copy / "sharded").glob("*.safetensors")} <= names
    assert (
        PieceManifest.from_json((model_copy / "sharded" / MANIFEST_NAME).read_bytes(), name="m")
        == manifest
    )


@pytest.mark.parametrize("mode", [None, False])
def test_remote_load_verifies_pieces(model_copy: Path, mode: bool | None) -> None:
    publish(model_copy / "sharded")
    with HTTPOrigin(model_copy) as origin:
        stream = pagefault.stream(origin.url + "/sharded", mmap=mode, request_size=PIECE * 3)
        got = dict(stream)
    assert stream.stats.verified and stream.stats.verify_s > 0
    assert_same_tensors(got, reference(model_copy / "sharded"))


def test_tampered_piece_is_rejected_before_exposure(model_copy: Path) -> None:
    shard = sorted((model_copy / "sharded").glob("*.safetensors"))[-1]
    publish(model_copy / "sharded")
    flip_byte(shard, shard.stat().st_size - 10)  # the last piece, the last tensor
    with HTTPOrigin(model_copy) as origin:
        with pytest.raises(IntegrityError, match=rf"{shard.name}: piece \d+"):
            pagefault.load(origin.url + "/sharded")
        # without verification the corrupt bytes would load: the check is what caught it
        # (the node cache checks what it stores whatever `verify` says, so bypass it too)
        pagefault.load(origin.url + "/sharded", verify=False, cache=False)


def test_tampered_header_piece_is_rejected(model_copy: Path) -> None:
    shard = model_copy / "single" / "model.safetensors"
    publish(model_copy / "single")
    flip_byte(shard, 4000)  # header bytes (a JSON space -> '!' would break parsing first)
    with HTTPOrigin(model_copy) as origin, pytest.raises((IntegrityError, pagefault.FormatError)):
        pagefault.load(origin.url + "/single")


def test_tampered_index_is_rejected(model_copy: Path) -> None:
    publish(model_copy / "sharded")
    index = model_copy / "sharded" / "model.safetensors.index.json"
    index.write_text(index.read_text().replace('"metadata"', '"metadata" '))
    with HTTPOrigin(model_copy) as origin, pytest.raises(IntegrityError, match="index"):
        pagefault.load(origin.url + "/sharded")


def test_local_verify_true_needs_and_checks_a_manifest(model_copy: Path) -> None:
    with pytest.raises(NotFound, match="manifest build"):
        pagefault.load(model_copy / "single", verify=True)
    publish(model_copy / "single")
    for mmap in (True, False):
        stream = pagefault.stream(model_copy / "single", verify=True, mmap=mmap)
        dict(stream)
        assert stream.stats.verified


def test_verify_reports_bad_pieces(model_copy: Path) -> None:
    publish(model_copy / "sharded")
    assert pagefault.verify(model_copy / "sharded").ok
    shard = sorted((model_copy / "sharded").glob("*.safetensors"))[0]
    flip_byte(shard, PIECE + 5)
    report = pagefault.verify(model_copy / "sharded")
    assert not report.ok and report.bad_pieces == [(shard.name, 1)]


@pytest.mark.parametrize("piece_hash", ["sha256", "blake3"])
def test_cli_build_verify_load(model_copy: Path, piece_hash: str) -> None:
    runner = CliRunner()
    directory = str(model_copy / "sharded")
    built = runner.invoke(
        app,
        ["manifest", "build", directory, "--piece-size", "256KiB", "--hash", piece_hash, "--json"],
    )
    assert built.exit_code == 0, built.output
    summary = json.loads(built.stdout)
    assert summary["manifest"].endswith(MANIFEST_NAME) and summary["piece_size"] == PIECE
    assert summary["hash"] == piece_hash
    checked = runner.invoke(app, ["verify", directory, "--json"])
    assert checked.exit_code == 0 and json.loads(checked.stdout)["ok"] is True
    flip_byte(sorted(Path(directory).glob("*.safetensors"))[0], 100_000)
    failed = runner.invoke(app, ["verify", directory, "--json"])
    assert failed.exit_code == 1 and json.loads(failed.stdout)["bad_pieces"]
    with HTTPOrigin(model_copy) as origin:
        loaded = runner.invoke(app, ["load", origin.url + "/single", "--json"])
    assert loaded.exit_code == 0, loaded.output
    assert json.loads(loaded.stdout)["mode"] == "mapped"  # through the node cache
    refused = runner.invoke(app, ["manifest", "build", directory, "--hash", "md5"])
    assert refused.exit_code == 2 and "--hash" in refused.output
