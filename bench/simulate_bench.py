"""The swarm simulator against the netns testbed, then at fleet scale (issue 22).

Validation reads the JSON that ``bench/swarm_bench.py --out`` wrote for each topology and
queueing (same model, links and piece size), fits the per-hop latency and per-piece
overhead of each queueing to its chain runs at N=1 and N=8, and compares the simulator
with every testbed run. Then it predicts N = 100, 1,000, 10,000 per topology and plots
completion time / link floor against N.

    python bench/swarm_bench.py --nodes 1,4,8,16 --size 24MiB --node-mbit 40 \\
        --origin-mbit 40 --stripes S --queueing Q --out DIR/q-Q-sS.json   # 4 runs
    python bench/simulate_bench.py --runs DIR [--png docs/swarm-sim.png] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pagefault.swarm.simulate import (
    CALIBRATION,
    DEFAULT_QUEUEING,
    TOPOLOGIES,
    SimConfig,
    simulate,
)
from pagefault.system.sizes import parse_size

SCALE = (100, 1000, 10000)
NAMES = {1: "chain", 2: "two-trees"}


def load_runs(directory: Path) -> list[dict[str, Any]]:
    """Every testbed run: queueing, topology, N, seconds, size, link rates."""
    runs = []
    for path in sorted(directory.glob("q-*-s*.json")):
        data = json.loads(path.read_text())
        args = data["args"]
        for run in data["runs"]:
            runs.append({
                "queueing": args["queueing"],
                "topology": NAMES[args["stripes"]],
                "nodes": run["nodes"],
                "seconds": run["all_done_s"],
                "cpu_busy": run["cpu_busy"],
                "size": data["size"],
                "link_mbit": args["node_mbit"],
                "origin_mbit": args["origin_mbit"],
                "piece_size": parse_size(args["piece_size"]),
            })  # fmt: skip
    return runs


def fit(runs: list[dict[str, Any]], queueing: str) -> tuple[float, float]:
    """(hop latency, per-piece overhead) so the chain's N=1 and N=8 runs come out exact."""
    chain = {r["nodes"]: r for r in runs if r["queueing"] == queueing and r["topology"] == "chain"}
    one, eight = chain[1], chain[8]
    bare = _predict(one, hop=0.0, overhead=0.0)
    pieces = -(-one["size"] // one["piece_size"])
    overhead = max(0.0, (one["seconds"] - bare) / pieces)
    per_hop = (eight["seconds"] - _predict(eight, hop=0.0, overhead=overhead)) / 7
    return max(0.0, per_hop), overhead


def _predict(run: dict[str, Any], *, hop: float, overhead: float) -> float:
    return simulate(_config(run, hop=hop, overhead=overhead)).seconds


def _config(run: dict[str, Any], *, hop: float, overhead: float, **overrides: Any) -> SimConfig:
    """The simulator set up like testbed ``run`` (links, model, pieces, placement), with
    ``overrides`` (another N or topology)."""
    settings: dict[str, Any] = {
        "nodes": run["nodes"],
        "link_mbit": run["link_mbit"],
        "origin_mbit": run["origin_mbit"],
        "size": run["size"],
        "piece_size": run["piece_size"],
        "topology": run["topology"],
        "queueing": run["queueing"],
        "hop_latency_s": hop,
        "piece_overhead_s": overhead,
    }
    return SimConfig(**(settings | overrides))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--png", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    runs = load_runs(args.runs)
    fits = {q: fit(runs, q) for q in sorted({r["queueing"] for r in runs})}
    for queueing, (hop, overhead) in fits.items():
        print(f"{queueing}: hop latency {hop:.3f} s, per-piece overhead {overhead * 1e3:.1f} ms")
    print("queueing     topology   N  testbed s  model s  model/testbed  host CPU")
    for run in runs:
        hop, overhead = fits[run["queueing"]]
        run["model_s"] = _predict(run, hop=hop, overhead=overhead)
        run["error"] = run["model_s"] / run["seconds"] - 1
        print(
            f"{run['queueing']:12} {run['topology']:9} {run['nodes']:2d} {run['seconds']:9.2f} "
            f"{run['model_s']:8.2f} {run['model_s'] / run['seconds']:13.2f}  "
            f"{run['cpu_busy']:.0%}{' (CPU-bound)' if run['cpu_busy'] > 0.9 else ''}"
        )
    base = runs[0]
    hop, overhead = fits.get(DEFAULT_QUEUEING, CALIBRATION[DEFAULT_QUEUEING])
    scale = []
    for topology in TOPOLOGIES:
        for nodes in (1, 4, 8, 16, 32, *SCALE):
            config = _config(
                base,
                hop=hop,
                overhead=overhead,
                nodes=nodes,
                topology=topology,
                queueing=DEFAULT_QUEUEING,  # the fit it uses
            )
            result = simulate(config)
            scale.append({"topology": topology, "nodes": nodes, **result.to_dict()})
    print("topology   N       seconds  / floor  origin egress  max upload")
    for row in scale:
        if row["nodes"] in SCALE:
            print(
                f"{row['topology']:9} {row['nodes']:6d} {row['seconds']:9.1f} "
                f"{row['seconds'] / row['floor_seconds']:8.2f} {row['origin_egress']:14.3f} "
                f"{row['max_upload']:11.2f}"
            )
    if args.out:
        args.out.write_text(json.dumps({"fits": fits, "runs": runs, "scale": scale}, indent=2))
    if args.png:
        plot(scale, runs, args.png)


def plot(scale: list[dict[str, Any]], runs: list[dict[str, Any]], png: Path) -> None:
    base = runs[0]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for topology, marker in (("chain", "o"), ("two-trees", "s")):
        rows = [r for r in scale if r["topology"] == topology]
        ax.plot(
            [r["nodes"] for r in rows],
            [r["seconds"] / r["floor_seconds"] for r in rows],
            f"{marker}-",
            label=f"{topology} (model)",
        )
        bed = [r for r in runs if r["topology"] == topology and r["queueing"] == DEFAULT_QUEUEING]
        floor = scale[0]["floor_seconds"]
        ax.plot(
            [r["nodes"] for r in bed],
            [r["seconds"] / floor for r in bed],
            marker,
            fillstyle="none",
            markersize=10,
            label=f"{topology} (netns testbed)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("nodes")
    ax.set_ylabel("completion time / link floor")
    ax.set_title(
        f"swarm: {base['size'] / 2**20:.0f} MiB, {base['link_mbit']:.0f} Mbit/s links,"
        f" {base['piece_size'] >> 10} KiB pieces, {DEFAULT_QUEUEING} queues"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)


if __name__ == "__main__":
    main()
