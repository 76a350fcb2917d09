"""Time to ready of ``vllm serve`` with its default loader and with ``--load-format
pagefault``, on a machine with a GPU and vLLM installed (this project's CI has neither).

Each variant starts a fresh ``vllm serve MODEL`` and waits for ``/health`` to answer,
then sends one completion (the first answer): the number users feel. Usage:

    python bench/vllm_check.py --model Qwen/Qwen3-0.6B [--uri s3://bucket/qwen/] [--rounds 2]

``--uri`` makes pagefault read the weights from there (an object store, HTTP, the node
cache, the swarm agent in ``PAGEFAULT_AGENT``) instead of the model's own location.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request

from pagefault.testing.ports import free_port


def serve(model: str, load_format: str, extra: dict[str, str], timeout: float) -> dict:
    port = free_port()
    argv = ["vllm", "serve", model, "--port", str(port), "--load-format", load_format]
    if extra:
        argv += ["--model-loader-extra-config", json.dumps(extra)]
    started = time.perf_counter()
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"vllm serve exited: {server.stderr.read()[-3000:]}")
            if time.perf_counter() - started > timeout:
                raise SystemExit(f"{load_format}: not ready after {timeout} s")
            try:
                urllib.request.urlopen(f"{base}/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        ready = time.perf_counter() - started
        body = json.dumps({"model": model, "prompt": "Hello", "max_tokens": 8}).encode()
        request = urllib.request.Request(
            f"{base}/v1/completions", body, {"Content-Type": "application/json"}
        )
        urllib.request.urlopen(request, timeout=120).read()
        return {
            "format": load_format,
            "ready_s": ready,
            "first_answer_s": time.perf_counter() - started,
        }
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--uri", help="where pagefault reads the weights (default: the model)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    extra = {"uri": args.uri} if args.uri else {}
    results = []
    for round_ in range(args.rounds):  # alternate, so neither always runs first
        order = ["auto", "pagefault"] if round_ % 2 == 0 else ["pagefault", "auto"]
        for load_format in order:
            result = serve(
                args.model, load_format, extra if load_format == "pagefault" else {}, args.timeout
            )
            results.append(result)
            print(json.dumps(result), flush=True)
    json.dump(results, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
