"""Why private loads were slow on this VM: fresh memory's cost depends on how long ago it
was freed, unless it comes from a reserved huge-page pool.

Runs ``raw-preadv-fresh-memory`` (2 threads reading the hot checkpoint into a new arena)
in a fresh process right after a run that freed the same kind of memory, then after an
idle pause of each length, with the arena on ordinary huge-page-advised memory and on a
reserved pool (root). A VM balloon with free page
reporting hands memory that has been free for ~2 s back to the host, and the guest's
next touch of it costs a host fault. Usage:

    python bench/fresh_memory.py [--dir /tmp/pagefault-bench] [--idle 0 15] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

from load_bench import reserve_pool, run_variant
from variants import shard_files


def measure(index: Path, files: list[Path], pool: bool) -> float:
    """One read into fresh memory, in a new process; seconds."""
    env = {"PAGEFAULT_HUGETLB": "1" if pool else "0"}
    result = run_variant("raw-preadv-fresh-memory", index, files, cold=False, env=env)
    return float(result["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pagefault-bench"))
    parser.add_argument("--idle", type=float, nargs="+", default=[0.0, 15.0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    index = args.dir / "model.safetensors.index.json"
    files = shard_files(index)
    for f in files:
        subprocess.run(["cat", str(f)], stdout=subprocess.DEVNULL, check=True)
    results: dict[str, list[float]] = {}
    with ExitStack() as stack:
        pooled = reserve_pool(stack, sum(f.stat().st_size for f in files)) > 0
        for _ in range(args.repeat):
            for pool in [False, True] if pooled else [False]:
                measure(index, files, pool)  # the predecessor: the same kind of memory, just freed
                for idle in args.idle:
                    time.sleep(idle)
                    key = f"{'pool' if pool else 'ordinary'} memory, {idle:g} s idle"
                    results.setdefault(key, []).append(round(measure(index, files, pool), 3))
                    print(key, results[key][-1], flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
