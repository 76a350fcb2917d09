"""CPU per control-plane request: the agent's model description, asked again and again.

An agent (in this process, no coordinator) fills a small model from a loopback HTTP
origin; then ``--requests`` describes of it are timed, client and server together (the
process's CPU time), as a poller such as ``swarm fetch`` or the testbed's drive pays it.

Usage: ``python bench/control_cost.py [--requests 500]``
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from pagefault.cache import CacheConfig
from pagefault.swarm.agent import Agent
from pagefault.swarm.client import AgentClient
from pagefault.swarm.config import AgentConfig
from pagefault.swarm.jsonhttp import call
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint
from pagefault.testing.http_origin import HTTPOrigin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_synthetic_checkpoint(root / "srv" / "model", SyntheticConfig(8 << 20, shards=2))
        config = AgentConfig(
            node="a", listen="127.0.0.1:0", api="127.0.0.1:0", data_dir=root / "seed"
        )
        agent = Agent(config, CacheConfig(enabled=False)).start()
        assert agent.api is not None
        url = f"http://{agent.api.address}"
        try:
            with HTTPOrigin(root / "srv") as origin:
                body = {"uri": f"{origin.url}/model/"}
                model = call(f"{url}/v1/models", method="POST", body=body)
                next(line for line in AgentClient(url).feed(model["id"]) if line.pieces)
                cpu, wall = _cpu(), time.perf_counter()
                for _ in range(args.requests):
                    call(f"{url}/v1/models/{model['id']}")
                cpu, wall = _cpu() - cpu, time.perf_counter() - wall
        finally:
            agent.stop()
    per = 1000 / args.requests
    print(f"{args.requests} describes: {wall * per:.2f} ms wall, {cpu * per:.2f} ms CPU each")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
