"""The swarm simulator: the coordinator's placement, pieces moved edge by edge."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pagefault.cli import app
from pagefault.errors import ConfigError
from pagefault.swarm.simulate import CALIBRATION, DEFAULT_QUEUEING, SimConfig, simulate
from pagefault.testing import netns

MIB = 1 << 20


def _run(**overrides: object) -> dict[str, float]:
    settings: dict[str, object] = {
        "nodes": 8,
        "link_mbit": 40.0,
        "size": 24 * MIB,
        "piece_size": MIB,
        "hop_latency_s": 0.1,
        "piece_overhead_s": 0.0,
        "topology": "chain",
    }
    return simulate(SimConfig(**(settings | overrides))).to_dict()  # type: ignore[arg-type]


def test_one_node_moves_the_model_at_its_link_rate() -> None:
    result = _run(nodes=1)
    assert result["seconds"] == pytest.approx(result["floor_seconds"])
    assert result["origin_egress"] == 1.0 and result["max_upload"] == 0.0


def test_a_chain_adds_one_piece_and_one_hop_per_node() -> None:
    piece_s = MIB / (40e6 / 8)
    one, eight = _run(nodes=1)["seconds"], _run(nodes=8)["seconds"]
    assert eight - one == pytest.approx(7 * (piece_s + 0.1))
    result = _run(nodes=8)
    assert result["origin_egress"] == 1.0 and result["max_upload"] == pytest.approx(1.0)


def test_two_trees_grow_with_the_depth_not_the_fleet() -> None:
    chain = _run(nodes=64)["seconds"]
    trees = [_run(nodes=n, topology="two-trees")["seconds"] for n in (8, 64)]
    assert trees[1] < chain / 2
    level = 2 * MIB / (40e6 / 8) + 0.1  # a stripe's edge runs at half the link
    assert trees[1] - trees[0] == pytest.approx(3 * level)  # 3 more levels, not 56 hops
    assert _run(nodes=64, topology="two-trees")["max_upload"] <= 1.05


def test_a_slow_node_in_a_chain_slows_everyone_behind_it() -> None:
    result = _run(nodes=8, slow_fraction=0.125, slow_mbit=10)
    assert result["floor_seconds"] == pytest.approx(24 * MIB / (10e6 / 8))
    assert result["seconds"] > result["floor_seconds"]


def test_failures_close_the_gap_and_every_survivor_completes() -> None:
    config = SimConfig(nodes=16, link_mbit=40, size=24 * MIB, piece_size=MIB, fail=0.25, seed=3)
    result = simulate(config)
    assert result.failed == 4 and len(result.completion_s) == 12
    assert all(t < float("inf") for t in result.completion_s.values())
    assert result.origin_egress >= 1.0
    assert result.seconds > simulate(SimConfig(**{**config.__dict__, "fail": 0.0})).seconds


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="topology"):
        SimConfig(nodes=4, link_mbit=40, size=MIB, piece_size=MIB, topology="star")
    with pytest.raises(ConfigError, match="positive"):
        SimConfig(nodes=0, link_mbit=40, size=MIB, piece_size=MIB)
    with pytest.raises(ConfigError, match="queueing 'fq'"):
        SimConfig(nodes=4, link_mbit=40, size=MIB, piece_size=MIB, queueing="fq")
    # a fit of one's own needs no calibration (bench/simulate_bench.py fits new queueings)
    SimConfig(4, 40, MIB, MIB, queueing="fq", hop_latency_s=0.1, piece_overhead_s=0.0)


def test_the_default_queueing_is_the_testbeds_and_calibrated() -> None:
    assert DEFAULT_QUEUEING == netns.DEFAULT_QUEUEING
    assert set(CALIBRATION) == set(netns.QUEUEINGS)
    assert SimConfig(4, 40, MIB, MIB).queueing == DEFAULT_QUEUEING


def test_cli_prints_the_issue_fields_as_json() -> None:
    argv = ["swarm", "simulate", "--nodes", "100", "--link-mbit", "40", "--size", "48MiB"]
    result = CliRunner().invoke(app, [*argv, "--topology", "two-trees", "--json"])
    assert result.exit_code == 0, result.output
    fields = json.loads(result.output)
    assert {"seconds", "floor_seconds", "origin_egress", "max_upload"} <= fields.keys()
    assert fields["seconds"] > fields["floor_seconds"] > 0


@pytest.mark.parametrize("topology", ["chain", "two-trees"])
@pytest.mark.parametrize("nodes", [16, 64])
def test_a_quarter_of_slow_nodes_does_not_slow_the_others(topology: str, nodes: int) -> None:
    alone = _run(nodes=nodes, topology=topology)
    mixed = _run(nodes=nodes, topology=topology, slow_fraction=0.25, slow_mbit=10.0)
    assert mixed["fast_seconds"] <= 1.10 * alone["seconds"]
    assert mixed["seconds"] > mixed["fast_seconds"]  # the slow ones finish, later
    assert mixed["max_upload"] <= 1.0 + 1e-9 and mixed["origin_egress"] == 1.0
