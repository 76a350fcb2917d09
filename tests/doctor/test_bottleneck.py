"""Bottleneck attribution: pure over a load's stage times and the node's figures, and
end to end on real loads (a capped HTTP origin, a mapped file, a private load)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import pagefault
from pagefault.cli import app
from pagefault.doctor.bottleneck import STAGES, Attribution, attribute, explain
from pagefault.testing import HTTPOrigin

LIMITS = {
    "hot_read": 10.0,
    "fresh:small-pages": 4.0,
    "fresh:huge-pages": 1.0,
    "memcpy": 8.0,
    "sha256": 1.5,
}


def load(**over: Any) -> dict[str, Any]:
    base = {
        "bytes": 4_000_000_000,
        "seconds": 1.0,
        "threads": 2,
        "read_s": 2.0,
        "verify_s": 0.0,
        "copy_s": 0.0,
        "stall_s": 0.0,
        "wait_s": 0.9,
        "pages": "small-pages",
        "bytes_by_source": {"local": 4_000_000_000},
    }
    return {**base, **over}


def test_a_private_read_at_the_fresh_fill_rate_is_page_faults() -> None:
    found = attribute(load(), LIMITS)
    assert found == Attribution("page-faults", 1.0, 4.0)


def test_a_read_far_below_the_fill_rate_is_storage() -> None:
    found = attribute(load(seconds=4.0, read_s=8.0, wait_s=3.9), LIMITS)
    assert found.bottleneck == "storage" and found.fraction_of_limit == pytest.approx(0.1)


def test_remote_bytes_make_it_the_network_and_hashing_wins_when_it_takes_longest() -> None:
    remote = load(bytes_by_source={"origin": 4_000_000_000})
    assert attribute(remote, LIMITS).bottleneck == "network"
    hashing = attribute(load(read_s=0.5, verify_s=1.9), LIMITS)
    assert hashing.bottleneck == "hashing" and hashing.limit_gbps == pytest.approx(3.0)


def test_a_mapped_load_is_storage_without_a_figure_and_an_idle_pipeline_is_the_consumer() -> None:
    assert attribute(load(pages="file-mapping"), LIMITS) == Attribution("storage", None, None)
    slow_reader = load(read_s=0.2, wait_s=0.01)
    assert attribute(slow_reader, LIMITS).bottleneck == "consumer"
    assert attribute(load(bytes=0), LIMITS).bottleneck is None


def test_every_stage_has_a_line_a_person_can_act_on() -> None:
    for stage in STAGES:
        assert stage in explain(Attribution(stage, 0.5, 2.0))


def test_a_load_from_a_capped_origin_names_the_network(sharded_checkpoint: Path) -> None:
    with HTTPOrigin(sharded_checkpoint.parent, bandwidth=8 << 20) as origin:
        tensors = pagefault.stream(f"{origin.url}/{sharded_checkpoint.name}", cache=False)
        for _ in tensors:
            pass
    assert tensors.stats.bottleneck == "network"
    assert "network" in explain(tensors.stats.attribution)


@pytest.mark.parametrize("mmap", [True, False], ids=["mapped", "private"])
def test_cli_json_reports_the_bottleneck(sharded_checkpoint: Path, mmap: bool) -> None:
    flag = "--mmap" if mmap else "--no-mmap"
    done = CliRunner().invoke(app, ["load", str(sharded_checkpoint), flag, "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert data["bottleneck"] in STAGES
    if mmap:
        assert data["bottleneck"] == "storage" and data["fraction_of_limit"] is None
    else:
        assert data["fraction_of_limit"] > 0
