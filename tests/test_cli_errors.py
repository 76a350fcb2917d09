"""Every CLI failure: one line (or one JSON object), typed, exit 2; never a traceback."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import pagefault
from pagefault.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    "argv",
    [
        ["load", "{model}", "--threads", "0"],
        ["verify", "{model}", "--threads", "0"],
        ["pull", "{model}", "{tmp}/out", "--threads", "0"],
        ["manifest", "build", "{model}", "--threads", "0"],
        ["load", "{model}", "--no-such-option"],
        ["load", "{model}", "--dtype", "int8"],
        ["manifest", "build", "{model}", "--piece-size", "3MiB"],
        ["manifest", "build", "{model}", "--piece-size", "0"],
        ["load", "{tmp}/missing"],
    ],
)
def test_errors_are_one_json_object_and_exit_2(
    argv: list[str], single_checkpoint: Path, tmp_path: Path
) -> None:
    args = [a.format(model=single_checkpoint, tmp=tmp_path) for a in argv]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 2, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {"error", "type"} and payload["error"]
    assert "Traceback" not in result.output
    assert not (single_checkpoint.parent / "pagefault.manifest.json").exists()


def test_error_line_is_not_folded_and_has_no_traceback(single_checkpoint: Path) -> None:
    """Run as users do (stderr a pipe, 80 columns): one line however long the message."""
    done = subprocess.run(
        [sys.executable, "-m", "pagefault", "load", str(single_checkpoint), "--threads", "0"],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error (UsageError):"), done.stderr
    assert "Traceback" not in done.stderr


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"pagefault {pagefault.__version__}"


def test_load_converts_with_a_dtype_name(single_checkpoint: Path) -> None:
    result = runner.invoke(app, ["load", str(single_checkpoint), "--dtype", "fp16", "--json"])
    assert result.exit_code == 0, result.output
    tensors = pagefault.load(single_checkpoint, dtype="bfloat16")
    assert {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch.bfloat16}


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool, "int8", "float17", 16])
def test_non_float_conversion_targets_are_refused(single_checkpoint: Path, dtype: object) -> None:
    with pytest.raises(pagefault.ConfigError, match="floating-point"):
        pagefault.load(single_checkpoint, dtype=dtype)  # type: ignore[arg-type]


def test_written_files_honour_the_umask(single_checkpoint: Path, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        pagefault.write_piece_manifest(
            pagefault.make_piece_manifest(single_checkpoint, piece_size=1 << 20),
            tmp_path / "m.json",
        )
        pagefault.pull(single_checkpoint.parent, tmp_path / "pulled")
        result = runner.invoke(app, ["synth", str(tmp_path / "synth"), "--size", "4MiB"])
        assert result.exit_code == 0, result.output
    finally:
        os.umask(old)
    written = [
        tmp_path / "m.json",
        *(tmp_path / "pulled").iterdir(),
        *(tmp_path / "synth").iterdir(),
    ]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in written}
    assert set(modes.values()) == {0o644}, modes


@pytest.mark.parametrize("argv", [["--help"], ["load", "--help"], ["cache", "ls", "--help"]])
def test_help_is_plain_with_no_bool_placeholders(argv: list[str]) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 0 and "--help" in result.stdout
    assert "<bool>" not in result.stdout


def test_json_of_a_mapped_load_names_what_backs_it(single_checkpoint: Path) -> None:
    result = runner.invoke(app, ["load", str(single_checkpoint), "--mmap", "--json"])
    assert json.loads(result.stdout)["pages"] == "file-mapping"
