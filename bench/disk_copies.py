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
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pagefault.cli.output import parse_size
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint
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
        api = f"127.0.0.1:{_free_port()}"
        argv = [sys.executable, "-m", "pagefault", "agent", "--api", api]
        agent = subprocess.Popen(
            [*argv, "--listen", f"127.0.0.1:{_free_port()}"], env=env, stderr=subprocess.DEVNULL
        )
        try:
            _wait_for(api)
            with HTTPOrigin(root / "srv") as origin:
                fetch = [sys.executable, "-m", "pagefault", "swarm", "fetch", "--quiet"]
                fetch += [f"{origin.url}/model/", "--agent", f"http://{api}"]
                subprocess.run(fetch, env=env, check=True, capture_output=True)
        finally:
            agent.terminate()
            agent.wait()
        report = {
            "model": _bytes(root / "srv" / "model"),
            "disk_tier_pieces": _bytes(root / "disk" / "pieces"),
            "seed_files": _bytes(root / "disk" / "swarm"),
            "ram_tier": _bytes(root / "ram"),
        }
    print(json.dumps(report, indent=2))


def _bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(address: str, timeout: float = 30.0) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((host, int(port))) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"no agent API on {address} after {timeout:.0f} s")


if __name__ == "__main__":
    main()
