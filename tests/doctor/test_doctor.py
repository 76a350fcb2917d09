"""``pagefault doctor``, the page-kind policy and ``pagefault pool``, measured for real
on this machine (small samples where the default would take seconds)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pagefault.cli import app
from pagefault.doctor import page_kind
from pagefault.doctor.diagnosis import diagnose
from pagefault.doctor.page_kind import fastest_pages, page_kinds_path
from pagefault.system.hugetlb import pool_page_size
from pagefault.tensors.memory import Arena
from pagefault.testing import HTTPOrigin


@pytest.fixture
def own_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    record = tmp_path / "doctor.json"
    monkeypatch.setenv("PAGEFAULT_DOCTOR_RECORD", str(record))
    return record


def test_the_doctor_measures_once_per_boot_then_reads_its_record(
    own_record: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(os.urandom(8 << 20))
    first = diagnose(path=model, sample_bytes=64 << 20)
    assert not first.cached and own_record.exists()
    assert first.limits["hot_read"] and first.limits["memcpy"] and first.limits["sha256"]
    assert first.page_kind in ("small-pages", "huge-pages", "hugetlb-pool")
    assert first.paths[str(model)]["bytes"] == 8 << 20
    again = diagnose(path=model)
    assert again.cached and again.limits == first.limits and again.advice == first.advice
    assert not diagnose(refresh=True, sample_bytes=64 << 20).cached


def test_doctor_cli_prints_a_table_and_json(own_record: Path) -> None:
    diagnose(sample_bytes=64 << 20)  # the record the CLI then reads
    runner = CliRunner()
    table = runner.invoke(app, ["doctor"])
    assert table.exit_code == 0, table.output
    assert "read of page-cached bytes" in table.output and "read from the record" in table.output
    data = json.loads(runner.invoke(app, ["doctor", "--json"]).output)
    assert data["cached"] is True and data["facts"]["cpus"] >= 1
    missing = runner.invoke(app, ["doctor", "--path", "/nonexistent/model", "--json"])
    assert missing.exit_code == 2 and json.loads(missing.output)["type"] == "ConfigError"


def test_the_policy_takes_the_fastest_kind_and_probes_again_when_stale(
    own_record: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAGEFAULT_HUGE_PAGES", raising=False)
    path = page_kinds_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = {"small-pages": 1.0, "huge-pages": 2.0, "hugetlb-pool": 9.0}
    path.write_text(json.dumps({"measured_at": 1000.0, "fresh": figures}))
    assert fastest_pages(now=1000.0 + 10) == "huge-pages"  # the pool is not the policy's
    figures["huge-pages"] = 1.4  # faster, but not by the margin: the steadier kind
    path.write_text(json.dumps({"measured_at": 1000.0, "fresh": figures}))
    assert fastest_pages(now=1000.0 + 10) == "small-pages"
    assert fastest_pages(now=1000.0 + page_kind.STALE_S + 1) in ("small-pages", "huge-pages")
    assert json.loads(path.read_text())["measured_at"] > 1000.0 + page_kind.STALE_S  # probed
    monkeypatch.setenv("PAGEFAULT_HUGE_PAGES", "1")
    assert fastest_pages() is None  # chosen by hand


def test_the_arena_gives_the_kind_asked_for() -> None:
    small = Arena(8 << 20, "small-pages")
    assert small.pages == "small-pages" and not small.pooled
    assert Arena(8 << 20, "huge-pages").pages in ("huge-pages", "small-pages")


@pytest.mark.skipif(
    os.geteuid() != 0 or pool_page_size() == 0, reason="resizing the pool needs root"
)
def test_pool_reserve_status_release() -> None:
    before = int(Path("/proc/sys/vm/nr_hugepages").read_text())
    if before:
        pytest.skip("this node already has a pool: leave it alone")
    runner = CliRunner()
    try:
        done = runner.invoke(app, ["pool", "reserve", "4MiB", "--json"])
        assert done.exit_code == 0, done.output
        assert 0 < json.loads(done.output)["reserved_bytes"] <= 4 << 20
        status = json.loads(runner.invoke(app, ["pool", "status", "--json"]).output)
        assert sum(n["total_bytes"] for n in status["nodes"]) > 0
    finally:
        released = runner.invoke(app, ["pool", "release", "--json"])
    assert json.loads(released.output)["reserved_bytes"] == 0


def test_pool_errors_are_typed() -> None:
    done = CliRunner().invoke(app, ["pool", "reserve", "4MiB", "--node", "999", "--json"])
    assert done.exit_code == 2 and json.loads(done.output)["type"] == "ConfigError"


def test_a_uri_capped_per_connection_is_measured_and_advised(
    own_record: Path, sharded_checkpoint: Path
) -> None:
    with HTTPOrigin(sharded_checkpoint.parent, bandwidth=8 << 20) as origin:
        uri = f"{origin.url}/{sharded_checkpoint.name}"
        found = diagnose(uri=uri, sample_bytes=64 << 20)
    figures = found.uris[uri]
    assert figures["parallel"] > 2 * figures["one_stream"]
    assert any("caps each connection" in line for line in found.advice)
