"""Paged weights (issue 20): time per token under a memory budget, and serving while loading.

A Llama-shaped model with random bf16 weights (>= 2 GiB, >= 8 decoder layers, sharded
safetensors), batch 1, greedy ``generate`` of 16 tokens. Every run is a fresh process
(``--worker``); rounds interleave the variants so none always follows the same one.

* ``resident``: ``load_into`` the whole model, then generate: the reference tokens and
  logits, and the resident time per token.
* ``paged``: ``pagefault.paged(budget=fraction x weights)`` for each fraction of the sweep
  (local files: layers are views of the page cache, mapped in and dropped again).
* ``slots``: the same at 25% with ``mmap=False``: every layer read (copied) into reused
  slot memory, the path remote and cached sources take.
* ``no-prefetch``, ``slots-no-prefetch``: 25%, ``prefetch=0``: each layer is brought in
  when it runs (mapped, and read into slots).
* ``accelerate``: ``infer_auto_device_map(max_memory={"cpu": budget})`` and
  ``load_checkpoint_and_dispatch(offload_folder=...)``, as accelerate's docs set it up.
* ``stream``: the time to read every weight once (parallel ``preadv`` into touched memory).
* cold, after dropping the page cache: ``serve`` (``paged(budget=None)`` until the first
  token), ``load-then-forward`` (``load_into`` then the same first token), ``stream``.

Steady state is the median decode step after the second. Peak RSS growth is the
process's high-water mark (reset after the model is built on ``meta``) minus its RSS then.

Usage: ``python bench/paged_bench.py [--rounds 3] [--png docs/paged.png] [--out FILE]``
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from variants import drop_caches, raw_preadv

DEFAULT_DIR = Path("/tmp/pagefault-paged-bench")
CONFIG = {
    "vocab_size": 32000,
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 26,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "tie_word_embeddings": True,  # as Llama 3.2 1B/3B: the resident part stays < 10%
    "torch_dtype": "bfloat16",
}
PROMPT = 32
NEW_TOKENS = 16
SWEEP = (0.10, 0.25, 0.50, 1.00)
GiB = 1 << 30


# -- the checkpoint -------------------------------------------------------------------


def ensure_checkpoint(directory: Path) -> Path:
    """Write the random model once; later runs reuse it while its config is the same."""
    if (directory / "model.safetensors.index.json").exists():
        written = json.loads((directory / "config.json").read_text())
        if all(written.get(k) == v for k, v in CONFIG.items() if k != "torch_dtype"):
            return directory
        shutil.rmtree(directory)
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(**CONFIG)
    model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=directory.name + "."))
    model.save_pretrained(staging, max_shard_size="1GB")
    staging.rename(directory)
    return directory


def weight_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.glob("*.safetensors"))


# -- one measurement, in its own process --------------------------------------------


def worker(mode: str, directory: Path, budget: int | None, device: str) -> dict[str, Any]:
    import torch
    import transformers
    from accelerate import init_empty_weights

    import pagefault

    torch.manual_seed(0)
    config = transformers.LlamaConfig.from_pretrained(directory)
    with init_empty_weights():
        model = transformers.LlamaForCausalLM(config).to(torch.bfloat16).eval()
    model.tie_weights()  # as from_pretrained does: the head is the embedding
    ids = torch.randint(
        0, config.vocab_size, (1, PROMPT), generator=torch.Generator().manual_seed(1)
    )
    baseline = _reset_peak()
    stamps: list[float] = []
    started = time.perf_counter()
    result: dict[str, Any] = {"mode": mode, "budget": budget, "device": device}
    paged = None
    ids = ids.to(device)
    if mode in {"resident", "load-then-forward"}:
        pagefault.load_into(model, directory, device=device)
    elif mode in {"paged", "no-prefetch", "serve", "slots", "slots-no-prefetch"}:
        prefetch = 0 if mode.endswith("no-prefetch") else None
        mmap = False if mode.startswith("slots") else None
        paged = pagefault.paged(
            model, directory, budget=budget, prefetch=prefetch, mmap=mmap, device=device
        )
    elif mode == "accelerate":
        model = _accelerate(model, directory, budget or 0)
    result["setup_s"] = time.perf_counter() - started
    model.register_forward_hook(lambda *_: stamps.append(time.perf_counter()))
    new = 1 if mode in {"serve", "load-then-forward"} else NEW_TOKENS
    with torch.no_grad():
        out = model.generate(
            ids,
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            return_dict_in_generate=True,
            output_logits=True,
        )
    result["first_token_s"] = stamps[0] - started
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    result["prefill_s"] = stamps[0] - started - result["setup_s"]
    result["per_token_s"] = statistics.median(steps[2:]) if len(steps) > 2 else None
    result["tokens"] = out.sequences[0, PROMPT:].tolist()
    digest = hashlib.sha256()
    for step in out.logits:
        digest.update(step.float().cpu().numpy().tobytes())
    result["logits_sha256"] = digest.hexdigest()
    result["peak_growth"] = _peak() - baseline
    if paged is not None:
        result["stats"] = {k: v for k, v in paged.stats.to_dict().items() if k != "stall_s"} | {
            "stall_s_median": statistics.median(paged.stats.stall_s or [0.0])
        }
        paged.close()
    return result


def _accelerate(model: Any, directory: Path, budget: int) -> Any:
    from accelerate import infer_auto_device_map, load_checkpoint_and_dispatch

    device_map = infer_auto_device_map(
        model,
        max_memory={"cpu": budget},
        no_split_module_classes=["LlamaDecoderLayer"],
    )
    folder = tempfile.mkdtemp(prefix="pagefault-accelerate-offload-")
    return load_checkpoint_and_dispatch(
        model, str(directory), device_map=device_map, offload_folder=folder
    )


def stream_seconds(directory: Path) -> float:
    """Read every weight byte once into memory already faulted (the read limit)."""
    return float(raw_preadv(directory / "model.safetensors.index.json"))


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> int:
    Path("/proc/self/clear_refs").write_text("5\n")  # VmHWM := VmRSS
    return _status("VmRSS")


def _peak() -> int:
    return _status("VmHWM")


# -- the driver -----------------------------------------------------------------------


def run(
    mode: str, directory: Path, budget: int | None = None, *, cold: bool = False, device: str
) -> dict:
    if cold:
        drop_caches(sorted(directory.glob("*.safetensors")))
    else:
        warm(directory)
    argv = [sys.executable, __file__, "--worker", mode, "--dir", str(directory), "--device", device]
    if budget is not None:
        argv += ["--budget", str(budget)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def warm(directory: Path) -> None:
    """Fill the page cache as a first paged pass does: faults on a huge-page-advised
    mapping (2 MiB folios). Pages ``cat`` caches are small folios, which a mapping must
    map one by one: the mapped variants run slower after it (docs/benchmarks.md)."""
    from pagefault.paging.readers import advised_mappings
    from pagefault.sources import LocalFileSource

    sources = [LocalFileSource(path) for path in sorted(directory.glob("*.safetensors"))]
    for source, mapping in zip(sources, advised_mappings(sources), strict=True):
        source.populate(mapping, 0, source.size())
        mapping.close()
        source.close()


def predicted(per_token_resident: float, stream_s: float, total: int, stats: dict) -> float:
    """The model of docs/benchmarks.md: max(compute, bytes read per token / read rate)."""
    streamed = 0.0 if stats["slots"] >= stats["groups"] else stats["groups"] * stats["slot_bytes"]
    return max(per_token_resident, streamed / (total / stream_s))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold-rounds", type=int, default=5)
    parser.add_argument(
        "--device", default="cpu", help="cuda: the GPU check (resident vs paged on the device)"
    )
    parser.add_argument("--worker")
    parser.add_argument("--budget", type=int)
    parser.add_argument("--png", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.worker:
        if args.worker == "stream":
            print(json.dumps({"mode": "stream", "seconds": stream_seconds(args.dir)}))
        else:
            print(json.dumps(worker(args.worker, args.dir, args.budget, args.device)))
        return
    directory = ensure_checkpoint(args.dir)
    total = weight_bytes(directory)
    print(
        f"model: {total / GiB:.2f} GiB, {CONFIG['num_hidden_layers']} layers, {os.cpu_count()} CPUs"
    )
    hot: dict[str, list[dict]] = {}
    variants = [("resident", None), ("stream", None)]
    variants += [(f"paged {f:.0%}", int(total * f)) for f in SWEEP]
    quarter = int(total * 0.25)
    baselines = ("slots", "slots-no-prefetch", "no-prefetch", "accelerate")
    if args.device == "cpu":  # on a GPU every paged variant already reads into slots
        variants += [(f"{name} 25%", quarter) for name in baselines]
    for round_ in range(args.rounds):
        order = variants[round_ % len(variants) :] + variants[: round_ % len(variants)]
        for name, budget in order if round_ % 2 == 0 else reversed(order):
            mode = name.split()[0]
            result = run(mode, directory, budget, device=args.device)
            hot.setdefault(name, []).append(result)
            print(f"  hot {name}: {_brief(result)}", flush=True)
    cold: dict[str, list[dict]] = {}
    for round_ in range(args.cold_rounds):
        names = ["serve", "load-then-forward", "stream", "paged 25%"]
        for name in names if round_ % 2 == 0 else reversed(names):
            budget = int(total * 0.25) if name == "paged 25%" else None
            result = run(name.split()[0], directory, budget, cold=True, device=args.device)
            cold.setdefault(name, []).append(result)
            print(f"  cold {name}: {_brief(result)}", flush=True)
    report = summarize(hot, cold, total) if args.device == "cpu" else summarize_device(hot, cold)
    print(json.dumps(report["summary"], indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"hot": hot, "cold": cold, **report}, indent=2))
    if args.png:
        plot(report, args.png)


def _brief(result: dict) -> str:
    if result["mode"] == "stream":
        return f"{result['seconds']:.2f} s"
    per = result.get("per_token_s")
    token = f"{per:.3f} s/token, " if per else ""
    peak = result["peak_growth"] / GiB
    return f"{token}first token {result['first_token_s']:.2f} s, peak +{peak:.2f} GiB"


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def summarize(hot: dict[str, list[dict]], cold: dict[str, list[dict]], total: int) -> dict:
    reference = hot["resident"][0]
    exact = {
        name: all(
            r["tokens"] == reference["tokens"] and r["logits_sha256"] == reference["logits_sha256"]
            for r in runs
        )
        for name, runs in hot.items()
        if name not in {"stream"}
    }
    resident = _median(hot["resident"], "per_token_s")
    stream = _median(hot["stream"], "seconds")
    sweep = []
    for fraction in SWEEP:
        runs = hot[f"paged {fraction:.0%}"]
        per = _median(runs, "per_token_s")
        limit = max(resident, stream)
        sweep.append({
            "budget_fraction": fraction,
            "budget": runs[0]["budget"],
            "per_token_s": per,
            "predicted_s": predicted(resident, stream, total, runs[0]["stats"]),
            "vs_limit": per / limit,
            "peak_growth": max(r["peak_growth"] for r in runs),
            "slots": runs[0]["stats"]["slots"],
            "stall_s_median": statistics.median(r["stats"]["stall_s_median"] for r in runs),
            "prefetch_depth": runs[0]["stats"]["prefetch_depth"],
        })  # fmt: skip
    quarter = sweep[1]
    accelerate = _median(hot["accelerate 25%"], "per_token_s")
    no_prefetch = _median(hot["no-prefetch 25%"], "per_token_s")
    prefill = _median(hot["resident"], "prefill_s")
    share = _layer_share(hot["paged 25%"][0]["stats"])
    rounds = list(zip(cold["serve"], cold["load-then-forward"], cold["stream"], strict=True))
    # the disk's speed swings 2-3x within minutes: compare within each cold round
    bounds = [1.15 * max(r["seconds"], prefill) + r["seconds"] * share for _, _, r in rounds]
    summary = {
        "weights_bytes": total,
        "exact": exact,
        "resident_per_token_s": resident,
        "stream_all_s": stream,
        "sweep": sweep,
        "paged25_vs_limit": quarter["per_token_s"] / max(resident, stream),
        "paged25_peak_growth_minus_budget": quarter["peak_growth"] - quarter["budget"],
        "accelerate25_per_token_s": accelerate,
        "speedup_vs_accelerate": accelerate / quarter["per_token_s"],
        "slots25_per_token_s": _median(hot["slots 25%"], "per_token_s"),
        "slots_no_prefetch25_per_token_s": _median(hot["slots-no-prefetch 25%"], "per_token_s"),
        "slots_speedup_vs_no_prefetch": _median(hot["slots-no-prefetch 25%"], "per_token_s")
        / _median(hot["slots 25%"], "per_token_s"),
        "no_prefetch25_per_token_s": no_prefetch,
        "speedup_vs_no_prefetch": no_prefetch / quarter["per_token_s"],
        "cold_serve_first_token_s": _median(cold["serve"], "first_token_s"),
        "cold_load_then_forward_s": _median(cold["load-then-forward"], "first_token_s"),
        "cold_read_all_s": _median(cold["stream"], "seconds"),
        "resident_prefill_s": prefill,
        "serve_vs_load_then_forward": statistics.median(
            s["first_token_s"] / lt["first_token_s"] for s, lt, _ in rounds
        ),
        "serve_vs_bound": statistics.median(
            s["first_token_s"] / bound for (s, _, _), bound in zip(rounds, bounds, strict=True)
        ),
        "cold_paged25_first_token_s": _median(cold["paged 25%"], "first_token_s"),
    }
    return {"summary": summary}


def summarize_device(hot: dict[str, list[dict]], cold: dict[str, list[dict]]) -> dict:
    """The GPU check: paged on the device against the model resident there."""
    resident = hot["resident"][0]
    summary: dict[str, Any] = {"resident_per_token_s": _median(hot["resident"], "per_token_s")}
    for name, runs in hot.items():
        if name.startswith("paged"):
            summary[name] = {
                "per_token_s": _median(runs, "per_token_s"),
                "vs_resident": _median(runs, "per_token_s") / summary["resident_per_token_s"],
                "same_tokens": all(r["tokens"] == resident["tokens"] for r in runs),
            }
    summary["cold_serve_vs_load_then_forward"] = statistics.median(
        s["first_token_s"] / lt["first_token_s"]
        for s, lt in zip(cold["serve"], cold["load-then-forward"], strict=True)
    )
    return {"summary": summary}


def _layer_share(stats: dict) -> float:
    """One layer's share of the weights (every layer is the same size here)."""
    return stats["slot_bytes"] / (stats["resident_bytes"] + stats["groups"] * stats["slot_bytes"])


def plot(report: dict, png: Path) -> None:
    if "sweep" not in report["summary"]:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = report["summary"]["sweep"]
    x = [100 * s["budget_fraction"] for s in sweep]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, [s["per_token_s"] for s in sweep], "o-", label="measured (median)")
    ax.plot(x, [s["predicted_s"] for s in sweep], "s--", label="model: max(compute, bytes/rate)")
    accelerate = report["summary"]["accelerate25_per_token_s"]
    ax.plot([25], [accelerate], "x", markersize=10, label="accelerate offload, 25%")
    slots = report["summary"]["slots25_per_token_s"]
    ax.plot([25], [slots], "^", markersize=8, label="read into slots (mmap=False), 25%")
    ax.set_xlabel("budget (% of weight bytes)")
    ax.set_ylabel("seconds per token")
    gib = report["summary"]["weights_bytes"] / GiB
    ax.set_title(f"paged Llama ({gib:.1f} GiB bf16), batch 1, CPU")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)


if __name__ == "__main__":
    main()
