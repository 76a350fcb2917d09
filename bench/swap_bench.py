"""Model swap at memory speed: one process loads two models alternately, handing the
old one's memory back with ``pagefault.recycle`` before each load (issue 23).

Two synthetic single-shard models (``--size`` each, default 2 GiB), page cache hot.
Each variant runs in its own fresh process, the two alternating ``--rounds`` times:

- ``recycle``: ``recycle(old)``, drop it, ``load(new, mmap=False)``;
- ``fresh``: drop the old model, ``load(new, mmap=False)`` (fresh memory every time).

Every process also measures the read limit the same way the doctor does (page-cached
bytes into memory already faulted) on the same files, so the ratio "swap GB/s / read
limit" comes from one process. Target: swaps 2..10 at >= 0.8x the read limit.

Usage: ``python bench/swap_bench.py [--size 2GiB] [--loads 10] [--rounds 2] [--out F]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import gc, json, sys, time
from pathlib import Path
import pagefault
from pagefault.doctor import probes

mode, loads, paths = sys.argv[1], int(sys.argv[2]), [Path(p) for p in sys.argv[3:]]
rates = sorted(probes.hot_read([p]) for p in paths for _ in range(2))
limit = rates[len(rates) // 2]
previous, runs = None, []
for i in range(loads):
    if previous is not None and mode == "recycle":
        pagefault.recycle(previous)
    previous = None
    gc.collect()
    stream = pagefault.stream(paths[i % 2], mmap=False)
    previous = dict(stream)  # the only reference to the model: a server's "current model"
    runs.append({"seconds": stream.stats.seconds, "gbps": stream.stats.gbps,
                 "pages": stream.stats.pages})
print(json.dumps({"mode": mode, "read_limit_gbps": limit, "loads": runs}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="2GiB")
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pagefault-swap"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    paths = prepare(args.dir, args.size)
    results = []
    for round_ in range(args.rounds):
        for mode in ("recycle", "fresh") if round_ % 2 == 0 else ("fresh", "recycle"):
            for path in paths:
                subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)
            done = subprocess.run(
                [sys.executable, "-c", CHILD, mode, str(args.loads), *map(str, paths)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            report(results[-1])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


def prepare(directory: Path, size: str) -> list[Path]:
    from pagefault.cli.output import parse_size
    from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint

    paths = []
    for seed in (1, 2):
        target = directory / f"model-{seed}"
        if not (target / "model.safetensors").exists():
            write_synthetic_checkpoint(target, SyntheticConfig(parse_size(size), 1, seed=seed))
        paths.append(target / "model.safetensors")
    return paths


def report(result: dict) -> None:
    limit = result["read_limit_gbps"]
    swaps = [r["gbps"] for r in result["loads"][1:]]
    median = statistics.median(swaps)
    kinds = sorted({r["pages"] for r in result["loads"][1:]})
    print(
        f"{result['mode']:8} first {result['loads'][0]['gbps']:.2f} GB/s, swaps 2..: median "
        f"{median:.2f} GB/s (min {min(swaps):.2f}) = {median / limit:.2f}x the read limit "
        f"{limit:.2f} GB/s; memory {', '.join(kinds)}"
    )


if __name__ == "__main__":
    main()
