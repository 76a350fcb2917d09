"""How many copies of a swarmed model a node keeps (issue 19: one store per node).

Starts a ``pagefault agent`` on loopback (no coordinator: it fetches from the origin
itself, as a lone node does), serves a synthetic model over HTTP, runs ``pagefault swarm
fetch`` and sums the bytes under the node cache's disk tier (``pieces/``), the agent's
seed files (``swarm/``) and the RAM tier.

Usage: ``python bench/disk_copies.py [--size 64MiB]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint
from pagefault.system.sizes import parse_size
from pagefault.testing.agentd import LocalAgent
from pagefault.testing.http_origin import HTTPOrigin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="64MiB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_synthetic_checkpoint(root / "srv" / "model", SyntheticConfig(parse_size(args.size)))
        env = {
            **os.environ,
            "PAGEFAULT_CACHE_DIR": str(root / "disk"),
            "PAGEFAULT_CACHE_RAM_DIR": str(root / "ram"),
        }
        agent = LocalAgent(env, root / "agent.log")
        try:
            with HTTPOrigin(root / "srv") as origin:
                fetch = [sys.executable, "-m", "pagefault", "swarm", "fetch", "--quiet"]
                fetch += [f"{origin.url}/model/", "--agent", agent.url]
                subprocess.run(fetch, env=env, check=True, capture_output=True)
        finally:
            agent.kill()
        report = {
            "model": _bytes(root / "srv" / "model"),
            "disk_tier_pieces": _bytes(root / "disk" / "pieces"),
            "seed_files": _bytes(root / "disk" / "swarm"),
            "ram_tier": _bytes(root / "ram"),
        }
    print(json.dumps(report, indent=2))


def _bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


if __name__ == "__main__":
    main()
