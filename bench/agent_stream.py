"""One node, one agent, a paced origin: what a load through the agent costs and when its
first tensor arrives (no network namespaces, no root).

A ``pagefault agent`` on loopback (no coordinator: it fetches from the origin itself,
as the head of a fleet does) and this process streaming the model through it with its
own node cache: seconds to open, to the first tensor and to the last; CPU seconds of the
loader and of the agent over the load; requests the loader made to follow the pieces
(one feed per load; before the feed, one long poll per range). The origin serves
each connection at ``--conn-mbps`` (the agent reads with 4 connections).

    python bench/agent_stream.py [--size 24MiB] [--piece-size 128KiB] [--conn-mbps 1.25]
        [--rounds 3] [--json]

Rounds run one after another, each with a fresh agent, cache and origin; medians printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

import torch  # noqa: F401 - imported before the clock starts, as a serving process has

import pagefault
import pagefault.swarm.client as swarm_client
from pagefault.api import make_piece_manifest, write_piece_manifest
from pagefault.manifest import MANIFEST_NAME
from pagefault.swarm.client import AgentClient
from pagefault.swarm.messages import FeedLine
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint
from pagefault.system.sizes import parse_size
from pagefault.testing import HTTPOrigin
from pagefault.testing.agentd import LocalAgent, process_cpu_s


class CountingClient(AgentClient):
    """The agent client, counting the feeds it opens (one HTTP request each)."""

    requests = 0

    def feed(self, *args: Any, **kwargs: Any) -> Iterator[FeedLine]:
        CountingClient.requests += 1
        return super().feed(*args, **kwargs)


def ram_root(root: Path) -> Path:
    """Where this round's RAM tier lives: tmpfs when the machine has /dev/shm."""
    shm = Path("/dev/shm")
    return shm / root.name if shm.is_dir() else root


def one_round(root: Path, conn_bytes_s: float) -> dict[str, float]:
    cache = {
        "PAGEFAULT_CACHE_DIR": str(root / "cache"),
        # the RAM tier on tmpfs, as its default /dev/shm/pagefault is
        "PAGEFAULT_CACHE_RAM_DIR": str(ram_root(root) / "ram"),
    }
    with HTTPOrigin(root / "origin", bandwidth=conn_bytes_s) as origin:
        agent = LocalAgent(cache, root / "agent.log")
        try:
            os.environ.update(cache)
            os.environ["PAGEFAULT_AGENT"] = agent.url
            CountingClient.requests = 0
            agent_cpu, own = process_cpu_s(agent.process.pid), resource.getrusage(0)
            began = time.perf_counter()
            stream = pagefault.stream(f"{origin.url}/model/")
            opened = time.perf_counter() - began
            first = None
            for _name, _tensor in stream:
                first = first if first is not None else time.perf_counter() - began
            done = time.perf_counter() - began
            after = resource.getrusage(0)
            return {
                "open_s": opened,
                "first_tensor_s": first or done,
                "all_s": done,
                "loader_cpu_s": after.ru_utime + after.ru_stime - own.ru_utime - own.ru_stime,
                "agent_cpu_s": process_cpu_s(agent.process.pid) - agent_cpu,
                "agent_requests": CountingClient.requests,
                "peers_bytes": stream.stats.bytes_by_source["peers"],
            }
        finally:
            agent.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="24MiB")
    parser.add_argument("--piece-size", default="128KiB")
    parser.add_argument("--conn-mbps", type=float, default=1.25, help="MB/s per connection")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    swarm_client.AgentClient = CountingClient  # type: ignore[misc]  # what AgentModel opens
    rounds = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="pagefault-agent-stream-") as tmp:
            root = Path(tmp)
            model = root / "origin" / "model"
            entry = write_synthetic_checkpoint(model, SyntheticConfig(parse_size(args.size), 2))
            manifest = make_piece_manifest(entry, piece_size=parse_size(args.piece_size))
            write_piece_manifest(manifest, str(model / MANIFEST_NAME))
            try:
                rounds.append(one_round(root, args.conn_mbps * 1e6))
            finally:
                shutil.rmtree(ram_root(root), ignore_errors=True)
    medians = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    if args.json:
        print(json.dumps({"args": vars(args), "rounds": rounds, "median": medians}))
    else:
        for key, value in medians.items():
            print(f"{key:>16}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
