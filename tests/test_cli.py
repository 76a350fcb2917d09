"""The pagefault command: JSON contracts, tables, typed error exits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from typer.testing import CliRunner

import pagefault
from pagefault.cli import app

runner = CliRunner()


def test_load_json(sharded_checkpoint: Path) -> None:
    result = runner.invoke(app, ["load", str(sharded_checkpoint), "--json", "--threads", "2"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["bytes"] == pagefault.inspect(sharded_checkpoint).total_bytes
    assert payload["threads"] == 2 and payload["device"] == "cpu"
    for key in ("seconds", "gbps", "read_s", "copy_s", "wait_s", "mode"):
        assert key in payload


def test_load_table(single_checkpoint: Path) -> None:
    result = runner.invoke(app, ["load", str(single_checkpoint), "--no-mmap", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "GB/s" in result.stdout
    assert re.search(r"\(private\) in (hugetlb-pool|huge-pages|small-pages) memory", result.stdout)


def test_inspect_json_and_table(sharded_checkpoint: Path) -> None:
    result = runner.invoke(app, ["inspect", str(sharded_checkpoint), "--json"])
    payload = json.loads(result.stdout)
    manifest = pagefault.inspect(sharded_checkpoint)
    assert payload["bytes"] == manifest.total_bytes
    assert [t["name"] for t in payload["tensors"]] == [t.name for t in manifest.tensors]
    table = runner.invoke(app, ["inspect", str(sharded_checkpoint)])
    assert "model.embed_tokens.weight" in table.stdout and "tensors" in table.stdout


def test_errors_exit_2_with_type(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 16)
    result = runner.invoke(app, ["load", str(bad), "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["type"] == "FormatError"
    result = runner.invoke(app, ["inspect", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "NotFound" in result.output


def test_synth_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        result = runner.invoke(app, ["synth", str(tmp_path / name), "--size", "4MiB", "--json"])
        assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_verify_passes_then_names_the_corrupted_piece(tmp_path: Path) -> None:
    state = {"w": torch.arange(300_000, dtype=torch.float32)}
    pagefault.save(state, tmp_path / "ckpt", async_=False)
    result = runner.invoke(app, ["verify", str(tmp_path / "ckpt"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["files"] == 2 and report["bad_pieces"] == []
    shard = tmp_path / "ckpt" / "model-00001-of-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    bad = runner.invoke(app, ["verify", str(tmp_path / "ckpt"), "--json"])
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["bad_pieces"] == [{"file": shard.name, "piece": 0}]
    missing = runner.invoke(app, ["verify", str(tmp_path)])
    assert missing.exit_code == 2 and "NotFound" in missing.output
