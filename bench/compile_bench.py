"""Time to first output under torch.compile, cold vs warm from each compile-cache tier.

Every run is a fresh process with a fresh, empty ``TORCHINDUCTOR_CACHE_DIR``; the
timer runs from just before ``torch.compile`` to the first output of a small
Transformers Llama. Variants:

- ``cold``: nothing cached anywhere (the node cache wiped, an empty store);
- ``warm-node``: the node cache holds the bundle (inductor's working directory wiped);
- ``warm-file`` / ``warm-redis``: the node cache wiped, the bundle in the shared store;
- ``inductor-local``: no pagefault, inductor's own directory reused (its best case).

Usage: ``python bench/compile_bench.py [--out results.json]`` (``make bench-compile``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import hashlib, json, os, sys, time
import torch, transformers
import pagefault
torch.manual_seed(0)
config = transformers.LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512,
                                  num_hidden_layers=4, num_attention_heads=4,
                                  num_key_value_heads=2, max_position_embeddings=128)
model = transformers.LlamaForCausalLM(config).eval()
ids = torch.randint(0, 512, (1, 32), generator=torch.Generator().manual_seed(1))
store = sys.argv[1] or None
started = time.perf_counter()
if store == "none":
    compiled = torch.compile(model)
    with torch.no_grad():
        out = compiled(ids).logits
    stats = {}
else:
    with pagefault.compile_cache("bench-llama", store=store) as cached:
        compiled = torch.compile(model)
        with torch.no_grad():
            out = compiled(ids).logits
    stats = cached.stats.to_dict()
seconds = time.perf_counter() - started
digest = hashlib.sha256(out.numpy().tobytes()).hexdigest()[:16]
print(json.dumps({"seconds": seconds, "output": digest, "stats": stats}))
"""


def run(store: str, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, store], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode:
        raise SystemExit(f"child failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pagefault-compile-bench-"))
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    node = work / "node-cache"
    base = {**os.environ, "PAGEFAULT_CACHE_DIR": str(node), "PAGEFAULT_CACHE_RAM_DIR": "off"}

    def fresh(name: str) -> dict[str, str]:
        inductor = work / f"inductor-{name}"
        shutil.rmtree(inductor, ignore_errors=True)
        return {**base, "TORCHINDUCTOR_CACHE_DIR": str(inductor)}

    file_store, redis_store = f"file://{work / 'store'}", f"redis://127.0.0.1:{port}/0"
    results = {}
    try:
        shutil.rmtree(node, ignore_errors=True)
        results["cold"] = run(file_store, fresh("cold"))  # publishes to node + file store
        run(redis_store, fresh("seed"))  # seeds redis (a local hit: publishes nothing new)
        shutil.rmtree(node / "compile" / results["cold"]["stats"]["key"], ignore_errors=True)
        results["warm-node"] = run("", fresh("node"))
        for name, store in (("warm-file", file_store), ("warm-redis", redis_store)):
            shutil.rmtree(node, ignore_errors=True)
            results[name] = run(store, fresh(name))
        inductor = {**base, "TORCHINDUCTOR_CACHE_DIR": str(work / "inductor-local")}
        run("none", inductor)
        results["inductor-local"] = run("none", inductor)
    finally:
        redis.kill()
        shutil.rmtree(work, ignore_errors=True)
    cold = results["cold"]["seconds"]
    for name, r in results.items():
        stats = r["stats"]
        size = stats.get("bundle_bytes") or stats.get("published_bytes", 0)
        print(
            f"{name:15} {r['seconds']:6.2f} s  {r['seconds'] / cold:5.2f}x cold  "
            f"hit={stats.get('hit')} bundle={size:,} B output={r['output']}"
        )
    outputs = {r["output"] for r in results.values()}
    print("identical outputs" if len(outputs) == 1 else f"OUTPUTS DIFFER: {outputs}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
