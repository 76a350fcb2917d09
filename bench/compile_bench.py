"""Time to first output under torch.compile, cold vs warm from each compile-cache tier.

Every run is a fresh process with a fresh, empty ``TORCHINDUCTOR_CACHE_DIR``; the
timer runs from just before ``torch.compile`` to the first output of a small
Transformers Llama. Variants:

- ``cold``: nothing cached anywhere (the node cache wiped, an empty store);
- ``warm-node``: the node cache holds the bundle (inductor's working directory wiped);
- ``warm-file`` / ``warm-redis`` / ``warm-s3``: the node cache wiped, the bundle in the
  shared store (a directory, Redis, S3 on moto);
- ``inductor-local``: no pagefault, inductor's own directory reused (its best case);
- ``inductor-redis``: no pagefault, an empty directory, inductor's own remote caches in
  Redis (``TORCHINDUCTOR_FX_GRAPH_REMOTE_CACHE``, ``..._AUTOGRAD_REMOTE_CACHE``), after
  a run that filled them.

Usage: ``python bench/compile_bench.py [--out results.json]`` (``make bench-compile``).
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

from pagefault.testing.ports import free_port

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


def start_s3() -> tuple[object, dict[str, str]]:
    """moto's S3 on loopback with a ``compile`` bucket, and the environment to reach it."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    ).create_bucket(Bucket="compile")
    return server, env


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
    moto, s3_env = start_s3()
    base = {
        **os.environ,
        **s3_env,
        "PAGEFAULT_CACHE_DIR": str(node),
        "PAGEFAULT_CACHE_RAM_DIR": "off",
    }

    def fresh(name: str) -> dict[str, str]:
        inductor = work / f"inductor-{name}"
        shutil.rmtree(inductor, ignore_errors=True)
        return {**base, "TORCHINDUCTOR_CACHE_DIR": str(inductor)}

    stores = {
        "warm-file": f"file://{work / 'store'}",
        "warm-redis": f"redis://127.0.0.1:{port}/0",
        "warm-s3": "s3://compile/bench",
    }
    results = {}
    try:
        shutil.rmtree(node, ignore_errors=True)
        results["cold"] = run(stores["warm-file"], fresh("cold"))  # publishes to node + store
        key = results["cold"]["stats"]["key"]
        for store in (stores["warm-redis"], stores["warm-s3"]):  # the node's bundle, shared
            push = [sys.executable, "-m", "pagefault", "compile-cache", "push", key]
            subprocess.run([*push, "--store", store], env=base, check=True, capture_output=True)
        shutil.rmtree(node / "compile" / key, ignore_errors=True)
        results["warm-node"] = run("", fresh("node"))
        for name, store in stores.items():
            shutil.rmtree(node, ignore_errors=True)
            results[name] = run(store, fresh(name))
        inductor = {**base, "TORCHINDUCTOR_CACHE_DIR": str(work / "inductor-local")}
        run("none", inductor)
        results["inductor-local"] = run("none", inductor)
        remote = {
            "TORCHINDUCTOR_FX_GRAPH_REMOTE_CACHE": "1",
            "TORCHINDUCTOR_AUTOGRAD_REMOTE_CACHE": "1",
            "TORCHINDUCTOR_REDIS_HOST": "127.0.0.1",
            "TORCHINDUCTOR_REDIS_PORT": str(port),
        }
        run("none", {**fresh("remote-seed"), **remote})
        results["inductor-redis"] = run("none", {**fresh("remote"), **remote})
    finally:
        redis.kill()
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)
    cold = results["cold"]["seconds"]
    for name, r in results.items():
        stats = r["stats"]
        size = stats.get("bundle_bytes") or stats.get("published_bytes", 0)
        print(
            f"{name:15} {r['seconds']:6.2f} s  {r['seconds'] / cold:5.2f}x cold  "
            f"hit={stats.get('hit')} isa={stats.get('vec_isa')} bundle={size:,} B "
            f"output={r['output']}"
        )
    outputs = {r["output"] for r in results.values()}
    print("identical outputs" if len(outputs) == 1 else f"OUTPUTS DIFFER: {outputs}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
