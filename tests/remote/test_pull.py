"""``pagefault pull``: identical files, verified, atomic, resumable after a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import pagefault
from pagefault.cli import app
from pagefault.errors import IntegrityError
from pagefault.manifest import MANIFEST_NAME
from pagefault.testing import HTTPOrigin

from ..helpers import flip_byte
from .test_manifests import publish


def same_files(left: Path, right: Path) -> None:
    """Same visible files, same bytes (``.pagefault-pull.json`` is the pull's own record)."""
    names = sorted(p.name for p in left.iterdir() if not p.name.startswith("."))
    assert names == sorted(p.name for p in right.iterdir() if not p.name.startswith("."))
    for name in names:
        assert (left / name).read_bytes() == (right / name).read_bytes(), name


def journaled(dest: Path) -> int:
    """Pieces recorded as complete in the journals of an unfinished pull."""
    journals = dest.glob(".*.pagefault-journal") if dest.exists() else []
    return sum(max(0, len(j.read_text().splitlines()) - 1) for j in journals)


def test_pull_sharded_model_with_manifest(model_copy: Path, tmp_path: Path) -> None:
    publish(model_copy / "sharded")
    with HTTPOrigin(model_copy) as origin:
        result = pagefault.pull(origin.url + "/sharded/", tmp_path / "dest")
    same_files(tmp_path / "dest", model_copy / "sharded")
    assert result.verified and result.downloaded == sum(
        p.stat().st_size for p in (model_copy / "sharded").glob("*.safetensors")
    )


def test_pull_refuses_corrupt_bytes_and_leaves_nothing_loadable(
    model_copy: Path, tmp_path: Path
) -> None:
    publish(model_copy / "sharded")
    flip_byte(sorted((model_copy / "sharded").glob("*.safetensors"))[0], 1000)
    dest = tmp_path / "dest"
    with HTTPOrigin(model_copy) as origin, pytest.raises(IntegrityError, match="re-run to resume"):
        pagefault.pull(origin.url + "/sharded", dest)
    assert not [p for p in dest.iterdir() if not p.name.startswith(".")]


def test_pull_resumes_after_sigkill(model_copy: Path, tmp_path: Path) -> None:
    publish(model_copy / "sharded")
    dest = tmp_path / "dest"
    total = sum(p.stat().st_size for p in (model_copy / "sharded").glob("*.safetensors"))
    with HTTPOrigin(model_copy, bandwidth=3e6) as origin:
        url = origin.url + "/sharded"
        child = subprocess.Popen(
            [sys.executable, "-m", "pagefault", "pull", url, str(dest), "--threads", "2", "-q"],
            stdout=subprocess.DEVNULL,
        )
        # Kill once a third of the pieces are journaled, whatever the machine's speed.
        deadline = time.monotonic() + 60
        while child.poll() is None and journaled(dest) < 8 and time.monotonic() < deadline:
            os.sched_yield()
        assert child.poll() is None, "the pull finished before it could be interrupted"
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert not (dest / "model.safetensors.index.json").exists()
        assert not list(dest.glob("*.safetensors"))  # nothing under a final name
        origin.bandwidth = None
        result = pagefault.pull(url, dest)
    same_files(dest, model_copy / "sharded")
    assert 0 < result.downloaded < total


def test_cli_pull_json(model_copy: Path, tmp_path: Path) -> None:
    with HTTPOrigin(model_copy) as origin:
        outcome = CliRunner().invoke(
            app, ["pull", origin.url + "/single/model.safetensors", str(tmp_path / "d"), "--json"]
        )
    assert outcome.exit_code == 0, outcome.output
    payload = json.loads(outcome.stdout)
    assert payload["verified"] is False and payload["files"] == ["model.safetensors"]
    assert MANIFEST_NAME not in os.listdir(tmp_path / "d")


def test_ctrl_c_stops_a_pull_at_once_and_says_how_to_resume(
    model_copy: Path, tmp_path: Path
) -> None:
    publish(model_copy / "sharded")
    dest = tmp_path / "dest"
    with HTTPOrigin(model_copy, bandwidth=1e6) as origin:
        child = subprocess.Popen(
            [sys.executable, "-m", "pagefault", "pull", f"{origin.url}/sharded", str(dest), "-q"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while child.poll() is None and journaled(dest) < 2 and time.monotonic() < deadline:
            os.sched_yield()
        assert child.poll() is None, "the pull finished before it could be interrupted"
        interrupted = time.monotonic()
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=30)
        stopped_in = time.monotonic() - interrupted
        origin.bandwidth = None
        resumed = pagefault.pull(f"{origin.url}/sharded", dest)
    assert child.returncode == 130
    assert stderr.strip().splitlines() == ["error (Interrupted): interrupted; re-run to resume"]
    assert stopped_in < 0.5, stopped_in  # in-flight reads are not waited for
    same_files(dest, model_copy / "sharded")
    assert resumed.downloaded < resumed.bytes
