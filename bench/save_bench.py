"""Side-by-side save benchmark: the memcpy and raw-write limits, pagefault, and baselines.

Each variant runs in a fresh subprocess (``save_variants.py``) that loads the same
deterministic synthetic checkpoint into private memory and saves it to a fresh
directory under ``--out-dir`` (the disk being measured), after ``sync`` and
``drop_caches``. Ratios compare variants of one run on one machine. Usage:

    python bench/save_bench.py --size 4GiB [--only NAME ...] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from load_bench import machine_facts, prepare, run_json
from pagefault.cli.output import parse_size
from save_variants import VARIANTS

console = Console()


def run_variant(name: str, index: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, str(Path(__file__).parent / "save_variants.py"), name, str(index)]
    result = run_json([*command, str(out)], name=name)
    shutil.rmtree(out, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4GiB")
    parser.add_argument("--shards", type=int, default=2, help="shards of the source checkpoint")
    parser.add_argument("--src", type=Path, default=Path("/tmp/pagefault-save-bench/src"))
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/pagefault-save-bench/out"))
    parser.add_argument("--only", nargs="*", help="run only these variants")
    parser.add_argument("--out", type=Path, help="also write results as JSON")
    args = parser.parse_args()
    args.src.mkdir(parents=True, exist_ok=True)
    index = prepare(args.src, parse_size(args.size), args.shards)
    names = [n for n in VARIANTS if not args.only or n in args.only]
    rows = []
    for name in names:
        result = run_variant(name, index, args.out_dir / name)
        rows.append(result)
        console.print(f"{name:24} {json.dumps(result)}")
    report(rows)
    if args.out:
        facts = machine_facts(size=args.size)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": facts, "results": rows}, indent=2))


def report(rows: list[dict]) -> None:
    limits = {r["variant"]: r for r in rows if "error" not in r}
    memcpy = limits.get("memcpy", {}).get("stall_s")
    raws = [limits[n]["durable_s"] for n in ("raw-write", "raw-write-direct") if n in limits]
    raw = min(raws) if raws else None  # the faster raw write is the disk's limit
    table = Table(
        "variant",
        "stall s",
        "stall / memcpy",
        "durable s",
        "persist s",
        "GB/s persist",
        "raw / persist",
        "first-save stall s",
        title="save: caller stall and time to durable",
    )
    for r in rows:
        if "error" in r:
            table.add_row(r["variant"], "error", str(r["error"]), "", "", "", "", "")
            continue
        persist = r.get("persist_s", r.get("durable_s"))
        own_memcpy = r.get("memcpy_s", memcpy)  # pagefault rows: limits from their own process
        own_raw = r.get("raw_write_s", raw)
        table.add_row(
            r["variant"],
            f"{r['stall_s']:.3f}",
            f"{r['stall_s'] / own_memcpy:.2f}" if own_memcpy else "-",
            _f(r.get("durable_s")),
            _f(persist),
            f"{r['bytes'] / persist / 1e9:.2f}" if persist else "-",
            f"{own_raw / persist:.2f}" if own_raw and persist else "-",
            _f(r.get("first_stall_s")),
        )
    console.print(table)
    console.print(
        "persist s: pagefault = background time from snapshot to commit; others = durable s. "
        "pagefault-async rows: best of 3 rounds, each re-measuring memcpy and raw write in the "
        "same process just before the save (per-round ratios in the JSON). "
        "Targets: stall / memcpy ≤ 1.2, raw / persist ≥ 0.8."
    )


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
