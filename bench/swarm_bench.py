"""Swarm benchmark: N nodes fetch one model through the swarm; origin egress, completion
time against the (median) single-node time at the same link speeds, per-node upload,
first piece.

Each node is a network namespace with a shaped link (``--node-mbit`` both ways; packets
to services, requests and ACKs, first unless ``--queueing`` says otherwise: see
``pagefault.testing.netns``), the origin has ``--origin-mbit``; Redis and the
coordinator sit unshaped on a control host. A fleet is built per N (fresh agents, empty
caches) and torn down after. The machine's CPU use over each run is reported, and a run
that kept the CPUs over 90% busy is marked CPU-bound; so are the agents' CPU seconds per
GB they moved (received plus forwarded, read from /proc). Needs root.

    python bench/swarm_bench.py --nodes 1,4,8,16 [--size 64MiB] [--node-mbit 25]
        [--origin-mbit 50] [--piece-size 128KiB] [--stripes 1]
        [--queueing requests-first|small-first|fifo]
        [--repeat 1] [--out FILE] [--logs DIR] [--load] [--churn 0.25] [--late 2]
        [--slow-fraction 0.25 --slow-mbit 10] [--timeline]

``--churn F`` SIGKILLs that share of the agents at random moments (seeded per run) in the
first 70% of the link floor; ``--late K`` has the last K nodes ask for the model only at
half of it. Survivors must finish byte-identical (``failed`` counts those that did not).

``--slow-fraction F`` puts that share of the nodes (spread over join order) on
``--slow-mbit`` links; every agent declares its rate (``--link-mbit``; none does with
``--undeclared``), and ``fast_done_s`` is when the last node at ``--node-mbit`` finished.

``--load``: each node runs ``pagefault.stream(uri)`` through its agent and its own node
cache (the source chain) instead of ``swarm fetch``, then a second, warm load; reports the
first tensor's time, bytes by source per node, and whether every node's tensors are
byte-identical to a local load.

Link rates default low enough that 16 agents do not saturate this 2-core machine's CPU
(the issue asks for that; CPU busy is in the table).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import pagefault
from pagefault.api import make_piece_manifest, write_piece_manifest
from pagefault.cache import CacheConfig, NodeCache
from pagefault.manifest import MANIFEST_NAME
from pagefault.swarm.messages import Timeline
from pagefault.swarm.simulate import slow_positions
from pagefault.swarm.topology import DEFAULT_STRIPES
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint
from pagefault.system.sizes import parse_size
from pagefault.testing import HTTPOrigin
from pagefault.testing.netns import DEFAULT_QUEUEING, QUEUEINGS, Host
from pagefault.testing.swarmbed import FleetConfig, SwarmTestbed, holds_model, load_and_digest
from pagefault.testing.timeline import hop_table

CPU_BOUND = 0.9  # host CPUs this busy over a run: its times say more about CPU than links


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def run_fleet(
    model: Path, size: int, nodes: int, args: argparse.Namespace, attempt: int
) -> dict[str, Any]:
    config = FleetConfig(
        nodes=nodes,
        node_mbit=args.node_mbit,
        origin_mbit=args.origin_mbit,
        stripes=args.stripes,
        slow_fraction=args.slow_fraction,
        slow_mbit=args.slow_mbit,
        declare_links=not args.undeclared,
        queueing=args.queueing,
        logs_dir=Path(args.logs) / f"n{nodes}-run{attempt}" if args.logs else None,
    )
    with SwarmTestbed(config, model) as bed:
        busy0, total0 = cpu_busy()
        idle_cpu = bed.agent_cpu_s()  # start-up (imports, joining) is not the transfer's
        if args.load:
            result = bed.load_all(timeout=args.timeout)
            busy1, total1 = cpu_busy()
            agent_cpu = cpu_since(bed, idle_cpu)
            hops = hop_timeline(bed, args) if args.timeline else None
            warm = warm_loads(bed, args.timeout)
            summary = load_summary(nodes, size, result, warm, (busy1 - busy0) / (total1 - total0))
            return summary | {"timeline": hops, "agent_cpu_s": agent_cpu}
        result, killed = drive_with_churn(bed, model, args, attempt)
        busy1, total1 = cpu_busy()
        hops = hop_timeline(bed, args) if args.timeline else None
        agent_cpu = cpu_since(bed, idle_cpu)
        per_node = [n for name, n in result["nodes"].items() if name not in killed]
        failed = [n for n in per_node if not holds_model(model, n)]
    forwarded = sum(n.get("uploaded", 0) for n in per_node)
    received = sum(n.get("from_origin", 0) + n.get("from_peers", 0) for n in per_node)
    walls = [n["wall_s"] for n in per_node if "wall_s" in n]
    slow = {f"n{i}" for i in slow_positions(nodes, args.slow_fraction)}
    fast_walls = [
        n["wall_s"] for k, n in result["nodes"].items() if k not in slow and "wall_s" in n
    ]
    firsts = [n["first_piece_s"] for n in per_node if n.get("first_piece_s") is not None]
    return {
        "nodes": nodes,
        "failed": len(failed),
        "killed": sorted(killed),
        "late": args.late,
        "all_done_s": max(walls),
        "fast_done_s": max(fast_walls),  # the nodes at --node-mbit (all without --slow-fraction)
        "egress_x": result["origin_bytes"] / size,
        "max_upload_x": max(n.get("uploaded", 0) for n in per_node) / size,
        "first_piece_median_s": statistics.median(firsts),
        "cpu_busy": (busy1 - busy0) / (total1 - total0),
        # an agent's work is receiving (verify, admit into the cache) and forwarding
        "agent_cpu_s": agent_cpu,
        "agent_cpu_s_per_gb_moved": sum(agent_cpu.values()) / ((forwarded + received) / 1e9),
        "per_node": result["nodes"],
        "timeline": hops,  # None without --timeline
    }


def cpu_since(bed: SwarmTestbed, before: dict[str, float]) -> dict[str, float]:
    """Each live agent's CPU seconds since ``before`` (``bed.agent_cpu_s()`` then)."""
    return {name: s - before.get(name, 0.0) for name, s in bed.agent_cpu_s().items()}


def timeline_table(run: dict[str, Any]) -> Table:
    """One fleet's hops: in the order the nodes received the model."""
    table = Table(title=f"N={run['nodes']} #{run['run']}: pieces verified, hop by hop")
    for column in ("node", "first (s)", "last (s)", "steady Mbit/s", "lag behind previous (ms)"):
        table.add_column(column, justify="right")
    for hop in run["timeline"]["hops"]:
        lag = hop["lag_ms"]
        table.add_row(
            hop["node"],
            f"{hop['first_s']:.2f}",
            f"{hop['last_s']:.2f}",
            f"{hop['steady_mbit']:.1f}",
            "-" if lag is None else f"{lag:.0f}",
        )
    return table


def hop_timeline(bed: SwarmTestbed, args: argparse.Namespace) -> dict[str, Any]:
    """Each node's first and last piece, steady rate and lag behind the node before it,
    from the agents' piece timelines (``--timeline``); ``pieces``: every node's own
    timeline (epoch seconds it began, seconds after that per piece), for a closer look."""
    raw = bed.timelines()
    timelines = {name: Timeline.model_validate(t) for name, t in raw.items()}
    hops = [asdict(row) for row in hop_table(timelines, parse_size(args.piece_size))]
    return {"hops": hops, "pieces": raw}


def drive_with_churn(
    bed: SwarmTestbed, model: Path, args: argparse.Namespace, attempt: int
) -> tuple[dict[str, Any], set[str]]:
    """``bed.drive`` while ``--churn`` of the nodes are SIGKILLed at random moments (seeded
    by the attempt) within the first 70% of one node's link floor, and the last ``--late``
    nodes ask for the model only at half of it (joining mid-swarm). Returns the drive's
    result (each node timed from its own request) and the killed nodes' names."""
    rng = random.Random(attempt)
    floor = link_floor_s(model, args.node_mbit)
    late = bed.nodes[len(bed.nodes) - args.late :] if args.late else []
    early = [n for n in bed.nodes if n not in late]
    victims = rng.sample(early, round(args.churn * len(bed.nodes)))
    timers = [threading.Timer(rng.uniform(0.1, 0.7) * floor, bed.kill_agent, [v]) for v in victims]
    nodes: dict[str, Any] = {}

    def drive(group: list[Host], delay: float) -> None:
        if delay:  # a scheduled join, not a wait for a condition
            time.sleep(delay)
        nodes.update(bed.drive(group, timeout=args.timeout)["nodes"])

    before = bed.origin_bytes()
    drivers = [threading.Thread(target=drive, args=(early, 0.0))]
    drivers += [threading.Thread(target=drive, args=(late, 0.5 * floor))] if late else []
    for thread in [*drivers, *timers]:
        thread.start()
    for thread in [*drivers, *timers]:
        thread.join()
    return {"origin_bytes": bed.origin_bytes() - before, "nodes": nodes}, {v.name for v in victims}


def link_floor_s(model: Path, node_mbit: float) -> float:
    """Seconds one node's link needs for the model (tbf counts packet headers)."""
    size = sum(f.stat().st_size for f in model.iterdir() if f.name != MANIFEST_NAME)
    return size / (node_mbit * 1e6 / 8 * 1448 / 1514)


LOCAL_DIGEST: dict[str, str] = {}  # the digest of a local load of the model, set in main


def ram_tier_reference(model: Path, rounds: int = 3) -> float:
    """GB/s of a warm load of ``model`` from a node cache's RAM tier (issue 4's warm load),
    on this machine, same size: what a node's second load is compared with."""
    speeds = []
    with (
        tempfile.TemporaryDirectory(prefix="pagefault-ram-ref-") as tmp,
        HTTPOrigin(model.parent) as origin,
    ):
        for round_ in range(rounds):
            root = Path(tmp) / str(round_)
            node = NodeCache(CacheConfig(disk_dir=root / "disk", ram_dir=root / "ram"))
            uri = f"{origin.url}/{model.name}/"
            dict(pagefault.stream(uri, cache=node))  # cold: fills both tiers
            warm = pagefault.stream(uri, cache=node)
            dict(warm)
            speeds.append(warm.stats.gbps)
    return statistics.median(speeds)


def warm_loads(bed: SwarmTestbed, timeout: float) -> dict[str, Any]:
    """Second loads, one node at a time (as on a fleet where each node has its own CPUs;
    all at once, 16 loads share this machine's 2 CPUs) on the first, a middle and the last
    node: through the agent as configured, and side by side (ABBA) a plain RAM-tier warm
    load with no agent configured, in the same fleet at the same moment."""
    sample = sorted({0, len(bed.nodes) // 2, len(bed.nodes) - 1})
    nodes: dict[str, Any] = {}
    for index in sample:
        node = bed.nodes[index]
        runs = {True: [], False: []}
        for agent in (True, False, False, True):
            runs[agent].append(bed.load_all([node], timeout=timeout, agent=agent)["nodes"])
        nodes[node.name] = {
            "agent": [r[node.name] for r in runs[True]],
            "ram_tier": [r[node.name] for r in runs[False]],
        }
    return {"nodes": nodes}


def load_summary(
    nodes: int, size: int, cold: dict[str, Any], warm: dict[str, Any], cpu: float
) -> dict[str, Any]:
    """A ``--load`` fleet: cold loads through the swarm, then warm loads from the node cache."""
    per_node = list(cold["nodes"].values())
    warm_nodes = [run for pair in warm["nodes"].values() for run in pair["agent"]]
    plain = [run for pair in warm["nodes"].values() for run in pair["ram_tier"]]
    want = LOCAL_DIGEST["model"]
    return {
        "nodes": nodes,
        "failed": sum(n["digest"] != want for n in per_node + warm_nodes + plain),
        "late_s_max": max(n["late_s"] for n in per_node + warm_nodes),
        # whole loads (open + every tensor), GB/s: bytes / wall from the common start
        "warm_gbps_median": statistics.median(n["bytes"] / n["wall_s"] / 1e9 for n in warm_nodes),
        "ram_tier_gbps_median": statistics.median(n["bytes"] / n["wall_s"] / 1e9 for n in plain),
        "all_done_s": max(n["wall_s"] for n in per_node),
        "egress_x": cold["origin_bytes"] / size,
        "max_upload_x": None,
        "first_piece_median_s": statistics.median(n["first_tensor_s"] for n in per_node),
        "warm_s_median": statistics.median(n["wall_s"] for n in warm_nodes),
        "ram_tier_s_median": statistics.median(n["wall_s"] for n in plain),
        "warm_origin_peer_bytes": sum(
            n["bytes_by_source"]["origin"] + n["bytes_by_source"]["peers"] for n in warm_nodes
        ),
        "cpu_busy": cpu,
        "loader_cpu_s_median": statistics.median(n["cpu_s"] for n in per_node),
        "per_node": {"cold": cold["nodes"], "warm": warm["nodes"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="64MiB")
    parser.add_argument("--nodes", default="1,4,8,16")
    parser.add_argument("--node-mbit", type=float, default=25.0)
    parser.add_argument("--origin-mbit", type=float, default=50.0)
    parser.add_argument(
        "--stripes", type=int, default=DEFAULT_STRIPES, help="1: chain, 2: two trees"
    )
    parser.add_argument("--piece-size", default="128KiB", help="torrent piece size")
    parser.add_argument(
        "--queueing",
        choices=QUEUEINGS,
        default=DEFAULT_QUEUEING,
        help="how shaped links queue (pagefault.testing.netns): small packets first,"
        " packets to services first, or FIFO",
    )
    parser.add_argument("--repeat", type=int, default=1, help="fleets per N (noise)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--out")
    parser.add_argument("--logs", help="keep each fleet's agent/origin/coordinator logs here")
    parser.add_argument("--load", action="store_true", help="nodes run pagefault.load(uri)")
    parser.add_argument(
        "--timeline", action="store_true", help="print each fleet's per-hop piece timeline"
    )
    parser.add_argument(
        "--churn", type=float, default=0.0, help="share of the nodes SIGKILLed at random times"
    )
    parser.add_argument("--late", type=int, default=0, help="nodes that join mid-swarm")
    parser.add_argument(
        "--slow-fraction", type=float, default=0.0, help="share of the nodes on slow links"
    )
    parser.add_argument("--slow-mbit", type=float, default=10.0, help="their link rate")
    parser.add_argument(
        "--undeclared", action="store_true", help="agents do not declare their link rates"
    )
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="pagefault-swarm-bench-") as tmp:
        model = Path(tmp) / "model"
        entry = write_synthetic_checkpoint(model, SyntheticConfig(parse_size(args.size), shards=2))
        manifest = make_piece_manifest(entry, piece_size=parse_size(args.piece_size))
        write_piece_manifest(manifest, model / MANIFEST_NAME)
        size = manifest.total_bytes
        LOCAL_DIGEST["model"] = load_and_digest(str(model), time.time())["digest"]
        ram_gbps = ram_tier_reference(model) if args.load else None
        floor = link_floor_s(model, args.node_mbit)
        runs = []
        for n in (int(x) for x in args.nodes.split(",")):
            for attempt in range(1, args.repeat + 1):
                began = time.monotonic()
                runs.append({"run": attempt, **run_fleet(model, size, n, args, attempt)})
                console.print(f"N={n} #{attempt}: done in {time.monotonic() - began:.0f} s")
    singles = [r["all_done_s"] for r in runs if r["nodes"] == 1]
    single = statistics.median(singles) if singles else None
    table = Table(
        title=f"swarm: {size:,} bytes, nodes {args.node_mbit:g} Mbit/s, origin "
        f"{args.origin_mbit:g} Mbit/s, {args.queueing} queues, link floor {floor:.1f} s"
    )
    for column in (
        "N",
        "run",
        "all nodes (s)",
        "/ single node",
        "origin egress / model",
        "max upload / model",
        "first piece/tensor (median s)",
        "CPU busy",
        "agent CPU s/GB",
        "failed",
    ):
        table.add_column(column, justify="right")
    for r in runs:
        table.add_row(
            str(r["nodes"]),
            str(r["run"]),
            f"{r['all_done_s']:.2f}",
            f"{r['all_done_s'] / single:.2f}" if single else "-",
            f"{r['egress_x']:.3f}",
            f"{r['max_upload_x']:.2f}" if r["max_upload_x"] is not None else "-",
            f"{r['first_piece_median_s']:.2f}",
            f"{r['cpu_busy']:.0%}" + (" (CPU-bound)" if r["cpu_busy"] > CPU_BOUND else ""),
            f"{r['agent_cpu_s_per_gb_moved']:.1f}" if "agent_cpu_s_per_gb_moved" in r else "-",
            str(r["failed"]),
        )
    console.print(table)
    for r in runs:
        if r["timeline"] is not None:
            console.print(timeline_table(r))
    if args.load:
        ratios = [r["warm_gbps_median"] / r["ram_tier_gbps_median"] for r in runs]
        console.print(
            "--load: warm second loads (agent configured) / plain RAM-tier warm loads, same"
            " node, ABBA: "
            + ", ".join(f"N={r['nodes']} {x:.2f}x" for r, x in zip(runs, ratios, strict=True))
            + f" (a RAM-tier warm load in a quiet machine: {ram_gbps:.2f} GB/s);"
            f" origin+peer bytes on warm loads: {sum(r['warm_origin_peer_bytes'] for r in runs)};"
            " first tensor / single node: "
            + ", ".join(
                f"N={r['nodes']} {r['first_piece_median_s'] / single:.2f}" for r in runs if single
            )
            + "; CPU seconds per node over a cold load (median), agent / loader: "
            + ", ".join(
                f"N={r['nodes']} {statistics.median(r['agent_cpu_s'].values()):.2f} /"
                f" {r['loader_cpu_s_median']:.2f}"
                for r in runs
            )
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps(
                {
                    "size": size,
                    "floor_s": floor,
                    "ram_gbps": ram_gbps,
                    "args": vars(args),
                    "runs": runs,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
