"""Time to ready: a fresh process loads a Transformers model from an HTTP origin, compiles
it, and gives its first output; weights, compile and first forward measured apart.

Variants (every one a fresh process with a fresh ``TORCHINDUCTOR_CACHE_DIR``):

- ``a-plain``: download the files (sequential GETs), ``from_pretrained``, compile;
- ``b-pagefault-weights``: ``load_into`` straight from the origin, compile from scratch;
- ``c-weights+compile-cache``: the same weights, the compile bundle from a shared store
  (the node cache empty);
- ``d-both-warm``: weights and compile artifacts both from the node cache.

``compile`` is the first forward minus the second (the compiled one), ``forward`` the
second. Usage: ``python bench/ready_bench.py [--png docs/ready.png] [--out r.json]``
(``make bench-ready``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pagefault
from pagefault.testing import HTTPOrigin

CHILD = r"""
import json, os, shutil, sys, tempfile, time, urllib.request
import torch, transformers, accelerate
import pagefault
variant, url, store = sys.argv[1:4]
torch.manual_seed(0)
ids = torch.randint(0, 4096, (1, 64), generator=torch.Generator().manual_seed(1))
started = time.perf_counter()
if variant == "a-plain":
    local = tempfile.mkdtemp()
    for name in ("config.json", "model.safetensors"):
        urllib.request.urlretrieve(f"{url}{name}", os.path.join(local, name))
    model = transformers.AutoModelForCausalLM.from_pretrained(local).eval()
else:
    with urllib.request.urlopen(f"{url}config.json") as answer:
        config = transformers.AutoConfig.for_model(**json.load(answer))
    with accelerate.init_empty_weights():
        model = transformers.AutoModelForCausalLM.from_config(config)
    model.tie_weights()
    pagefault.load_into(model, url, cache=variant == "d-both-warm")
    model.eval()
weights = time.perf_counter() - started
if variant in ("a-plain", "b-pagefault-weights"):
    cached = None
else:
    cached = pagefault.compile_cache("ready-llama", store=store).__enter__()
compiled = torch.compile(model)
with torch.no_grad():
    first_started = time.perf_counter()
    out = compiled(ids).logits
    first = time.perf_counter() - first_started
    second_started = time.perf_counter()
    compiled(ids)
    second = time.perf_counter() - second_started
total = time.perf_counter() - started
if cached is not None:
    cached.__exit__(None, None, None)
print(json.dumps({
    "variant": variant, "weights_s": weights, "compile_s": first - second, "forward_s": second,
    "total_s": total, "hit": cached.stats.hit if cached else None,
    "output": float(out.double().sum()),
}))
"""
VARIANTS = ["a-plain", "b-pagefault-weights", "c-weights+compile-cache", "d-both-warm"]


def run(variant: str, url: str, store: str, env: dict[str, str], inductor: Path) -> dict:
    shutil.rmtree(inductor, ignore_errors=True)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, variant, url, store],
        capture_output=True,
        text=True,
        env={**env, "TORCHINDUCTOR_CACHE_DIR": str(inductor)},
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"{variant} failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_model(directory: Path) -> None:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=4096,
        hidden_size=512,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=256,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(directory)
    manifest = pagefault.make_piece_manifest(directory, piece_size=1 << 20)
    pagefault.write_piece_manifest(manifest, directory / "pagefault.manifest.json")


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["variant"] for r in results]
    bottom = [0.0] * len(results)
    figure, axes = plt.subplots(figsize=(8, 4))
    for phase, color in (
        ("weights_s", "#4878d0"),
        ("compile_s", "#ee854a"),
        ("forward_s", "#6acc64"),
    ):
        values = [max(0.0, r[phase]) for r in results]
        axes.bar(names, values, bottom=bottom, label=phase.removesuffix("_s"), color=color)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes.set_ylabel("seconds to first output")
    axes.set_title("Time to ready: weights from an HTTP origin + torch.compile (CPU)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--png", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pagefault-ready-bench-"))
    node = work / "node-cache"
    env = {**os.environ, "PAGEFAULT_CACHE_DIR": str(node), "PAGEFAULT_CACHE_RAM_DIR": "off"}
    store = f"file://{work / 'compile-store'}"
    try:
        write_model(work / "origin" / "model")
        with HTTPOrigin(work / "origin") as origin:
            url = f"{origin.url}/model/"
            results = {}
            for variant in ("a-plain", "b-pagefault-weights"):
                results[variant] = run(variant, url, store, env, work / "inductor")
            run("d-both-warm", url, store, env, work / "inductor")  # seed: node + store
            results["d-both-warm"] = run("d-both-warm", url, store, env, work / "inductor")
            shutil.rmtree(node)
            name = "c-weights+compile-cache"
            results[name] = run(name, url, store, env, work / "inductor")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [results[v] for v in VARIANTS]
    print(f"{'variant':26} {'weights':>8} {'compile':>8} {'forward':>8} {'total':>8}  hit")
    for r in rows:
        print(
            f"{r['variant']:26} {r['weights_s']:8.2f} {r['compile_s']:8.2f} "
            f"{r['forward_s']:8.3f} {r['total_s']:8.2f}  {r['hit']}"
        )
    same = len({round(r["output"], 3) for r in rows}) == 1
    print("identical outputs" if same else f"OUTPUTS DIFFER: {[r['output'] for r in rows]}")
    if args.png:
        plot(rows, args.png)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
