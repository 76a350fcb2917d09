"""Side-by-side load benchmark: the machine's read limit, pagefault, and the baselines.

Every variant runs in a fresh subprocess on the same checkpoint, hot (page cache warm)
and cold (page cache dropped before each run), so ratios come from one run on one
machine. Usage:

    python bench/load_bench.py --size 4GiB --shards 2 [--no-cold] [--out results.json]
    python bench/load_bench.py --size 1GiB --quick     # the README's demonstration

``--quick`` runs 3 hot rounds and 1 cold round of six variants (the limit, pagefault
mapped and private, safetensors, torch.load, Run:ai; about two minutes at 1 GiB on a
2-CPU VM);
the report is an 80-column table of medians, ``--wide`` adds memory deltas and every
run's time, ``--verbose`` prints each run as it finishes.

Hot and cold alike run in rounds (``--repeat`` hot, ``--cold-repeat`` cold), each round
running every variant once (hot: after reading the files into the page cache; cold:
after dropping it), keeping the median per variant. This VM's disk swings 2-3x within
minutes, so variants measured one after another are measured in different weather; and
the cost of fresh memory depends on what the previous process freed, and when, so each
round changes the order: no variant always runs in the same position or after the same
one (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from pagefault.cli.output import parse_size
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint
from pagefault.tensors.memory import HUGE_PAGE
from pagefault.testing.hugetlb import reserved_pool, touch_pool
from variants import VARIANTS, drop_caches

console = Console(width=None if sys.stdout.isatty() else 120)


def prepare(directory: Path, size: int, shards: int) -> Path:
    """Write the synthetic checkpoint (once per size) and its torch.save twin."""
    marker = directory / "config.json"
    wanted = {"size": size, "shards": shards}
    index = directory / ("model.safetensors.index.json" if shards > 1 else "model.safetensors")
    if not (marker.exists() and json.loads(marker.read_text()) == wanted and index.exists()):
        console.print(f"writing a {size / 2**30:.2f} GiB synthetic checkpoint to {directory}")
        for old in directory.glob("*"):
            old.unlink()
        write_synthetic_checkpoint(directory, SyntheticConfig(size=size, shards=shards))
        marker.write_text(json.dumps(wanted))
    return index


def run_variant(
    name: str, index: Path, files: list[Path], cold: bool, env: dict[str, str] | None = None
) -> dict:
    """Run variant ``name`` in a fresh process (``env`` on top of the variant's own)."""
    env = {**os.environ, **VARIANTS[name].env, **(env or {})}
    if cold:
        drop_caches(files)
    command = [sys.executable, str(Path(__file__).parent / "variants.py"), name, str(index)]
    return run_json(command, name=name, env=env)


def machine_facts(**run: object) -> dict[str, object]:
    """What a results file records about where and how it was measured."""
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "kernel": os.uname().release,
        **run,
    }


def run_json(command: list[str], *, name: str, env: dict[str, str] | None = None) -> dict:
    """Run a variant's process; its last stdout line is its JSON result (or its error)."""
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return {"variant": name, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4GiB")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pagefault-bench"))
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-cache runs")
    parser.add_argument("--repeat", type=int, default=5, help="hot rounds (median kept)")
    parser.add_argument(
        "--cold-repeat",
        type=int,
        default=5,
        help="cold rounds (median kept)",
    )
    parser.add_argument("--only", nargs="*", help="run only these variants")
    parser.add_argument(
        "--hugetlb-pool",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reserve huge pages for the model during the run, as a node admin would "
        "(vm.nr_hugepages; root); pagefault-private-no-pool shows a node without them",
    )
    parser.add_argument("--out", type=Path, help="also write results as JSON")
    parser.add_argument("--quick", action="store_true", help="3 hot rounds, 1 cold round")
    parser.add_argument("--wide", action="store_true", help="memory deltas and every run")
    parser.add_argument("--verbose", action="store_true", help="print each run")
    parser.add_argument(
        "--doctor",
        action="store_true",
        help="also run `pagefault doctor --refresh` after the hot rounds and compare its "
        "read, fresh-memory and memcpy figures with the matching rows",
    )
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.cold_repeat = 3, 1
        args.only = args.only or QUICK_VARIANTS
    args.dir.mkdir(parents=True, exist_ok=True)
    index = prepare(args.dir, parse_size(args.size), args.shards)
    files = sorted(args.dir.glob("*.safetensors"))
    names = [n for n in VARIANTS if not args.only or n in args.only]
    with ExitStack() as stack:
        pool = reserve_pool(stack, sum(f.stat().st_size for f in files)) if args.hugetlb_pool else 0
        hot = run_rounds(names, index, files, rounds=args.repeat, cold=False, verbose=args.verbose)
        cold = (
            []
            if args.no_cold
            else run_rounds(names, index, files, args.cold_repeat, True, verbose=args.verbose)
        )
        results = {"hot": hot, "cold": cold}
        doctor = compare_doctor(hot, args.dir) if args.doctor else None
    report(results, wide=args.wide, rounds={"hot": args.repeat, "cold": args.cold_repeat})
    if doctor is not None:
        results["doctor"] = doctor
    if args.out:
        facts = machine_facts(size=args.size, shards=args.shards, hugetlb_pool_bytes=pool)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": facts, **results}, indent=2))


def compare_doctor(hot: list[dict], directory: Path) -> list[dict]:
    """The doctor's figures beside the same figures from the hot rounds (issue 23: within
    15%), measured in this run so the machine's weather is the same."""
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "PAGEFAULT_DOCTOR_RECORD": str(Path(scratch) / "record.json")}
        done = subprocess.run(
            [sys.executable, "-m", "pagefault", "doctor", "--refresh", "--json",
             "--path", str(directory)],
            capture_output=True, text=True, env=env, check=True,
        )  # fmt: skip
    found = json.loads(done.stdout)
    limits = {**found["limits"], **found["paths"][str(directory)]}  # the checkpoint's own
    rows = {r["variant"]: r for r in hot if "error" not in r}
    fresh = rows.get("raw-preadv-fresh-memory", {})
    pairs = [
        ("read limit", "hot_read", "raw-preadv"),
        (
            f"fresh {fresh.get('pages', '?')}",
            f"fresh:{fresh.get('pages')}",
            "raw-preadv-fresh-memory",
        ),
        ("memcpy", "memcpy", "memcpy"),
    ]
    table = Table("figure", "doctor GB/s", "bench GB/s", "doctor / bench")
    compared = []
    for label, key, variant in pairs:
        ours, bench = limits.get(key), rows.get(variant, {}).get("gbps")
        ratio = ours / bench if ours and bench else None
        compared.append({"figure": label, "doctor_gbps": ours, "bench_gbps": bench, "ratio": ratio})
        table.add_row(
            label,
            f"{ours:.2f}" if ours else "-",
            f"{bench:.2f}" if bench else "-",
            f"{ratio:.2f}" if ratio else "-",
        )
    console.print(table)
    return compared


def reserve_pool(stack: ExitStack, nbytes: int) -> int:
    """Reserve huge pages for ``nbytes`` until ``stack`` closes; the bytes reserved."""
    try:
        added = stack.enter_context(reserved_pool(nbytes + HUGE_PAGE))
    except OSError as exc:
        console.print(f"no huge-page pool ({exc}): every private load uses ordinary memory")
        return 0
    seconds = touch_pool(min(added, nbytes))
    console.print(f"reserved {added / 2**30:.2f} GiB of huge pages; first touch {seconds:.2f} s")
    return added


def run_rounds(
    names: list[str], index: Path, files: list[Path], rounds: int, cold: bool, *, verbose: bool
) -> list[dict]:
    """Every variant once per round, in :func:`round_order`; the median run of each."""
    temperature = "cold" if cold else "hot"
    runs: dict[str, list[dict]] = {name: [] for name in names}
    with console.status("") as status:
        for round_ in range(rounds):
            for name in round_order(names, round_):
                status.update(f"{temperature} round {round_ + 1}/{rounds}: {name}")
                if not cold:
                    for f in files:
                        subprocess.run(["cat", str(f)], stdout=subprocess.DEVNULL, check=True)
                runs[name].append(run_variant(name, index, files, cold=cold))
                if verbose:
                    summary = _summary(runs[name][-1])
                    console.print(f"{temperature:4} {name:28} {summary} (round {round_ + 1})")
    return [_median_run(variant_runs) for variant_runs in runs.values() if variant_runs]


def round_order(names: list[str], round_: int) -> list[str]:
    """Round ``round_``'s order: every variant once, each round starting elsewhere and
    stepping through the list by a different stride coprime with its length, so that
    both the position of a variant and the one run before it change from round to round."""
    n = len(names)
    strides = [k for k in range(1, n + 1) if math.gcd(k, n) == 1]
    stride = strides[round_ % len(strides)]
    return [names[(round_ + i * stride) % n] for i in range(n)]


def _median_run(runs: list[dict]) -> dict:
    """The median successful run (the lower middle one of an even count) with every run's
    seconds; else the first error."""
    ok = sorted((r for r in runs if "error" not in r), key=lambda r: r["seconds"])
    if not ok:
        return runs[0]
    return {**ok[(len(ok) - 1) // 2], "runs_s": [r["seconds"] for r in ok]}


def _summary(result: dict) -> str:
    if "error" in result:
        return f"error: {result['error']}"
    return f"{result['seconds']:.3f} s  {result['gbps']:.2f} GB/s"


def report(results: dict[str, list[dict]], *, wide: bool, rounds: dict[str, int]) -> None:
    """One table per temperature; 80 columns unless ``wide``."""
    for temperature, rows in results.items():
        if not rows:
            continue
        limit = next((r for r in rows if r["variant"] == "raw-preadv" and "error" not in r), None)
        columns = ["variant", "seconds", "GB/s", "× limit", "RSS Δ MiB"]
        if wide:
            columns += ["anon Δ MiB", "file-backed Δ MiB", "all runs (s)"]
        count = rounds[temperature]
        table = Table(
            *columns,
            title=f"{temperature} page cache: median of {count} run{'s' if count > 1 else ''}",
        )
        for r in rows:
            if "error" in r:
                table.add_row(r["variant"], "error", str(r["error"])[:40], "", "")
                continue
            ratio = f"{limit['seconds'] / r['seconds']:.2f}" if limit else "-"
            cells = [r["variant"], f"{r['seconds']:.3f}", f"{r['gbps']:.2f}", ratio]
            cells.append(f"{r['peak_rss_mib']:.0f}")
            if wide:
                cells += [f"{r['anon_mib']:.0f}", f"{r['file_mib']:.0f}"]
                cells.append(" ".join(f"{t:.2f}" for t in r.get("runs_s", [])))
            table.add_row(*cells)
        console.print(table)
    console.print(LIMIT_NOTE, width=min(console.width, 80))


# The demonstration's rows: the limit, both pagefault modes, and the usual ways to load.
QUICK_VARIANTS = [
    "raw-preadv",
    "pagefault-mapped",
    "pagefault-private",
    "safetensors+clone",
    "torch.load",
    "runai-default",
]
LIMIT_NOTE = (
    "× limit: raw-preadv's time over this one (1.00 = the machine's read limit into "
    "fresh memory). Mapped loads can beat it: they share the page cache's pages instead "
    "of copying into new memory. Each variant runs in a fresh process; rounds change "
    "their order. `make bench` runs the full benchmark."
)


if __name__ == "__main__":
    main()
