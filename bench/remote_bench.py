"""Remote-origin benchmark: parallel ranged GETs against a per-connection bandwidth cap.

One run measures, side by side on one machine:

* the cap itself: one plain streaming GET of the whole model (what ``curl`` would get);
* pagefault with 1..N connections against the capped origin, as a fraction of N x cap;
* the loopback/CPU limit: pagefault against the same origin uncapped;
* verified vs unverified loads (a piece manifest published beside the model);
* Run:ai Model Streamer and pagefault reading the same objects from the S3-compatible
  server (moto), whose own speed is the limit there.

The origin runs in its own process so its GIL does not share the client's. Usage:

    python bench/remote_bench.py --size 512MiB [--cap 50MB] [--connections 1 4 8 16]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import obstore
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
import pagefault
from load_bench import machine_facts
from pagefault.cli.output import parse_size
from pagefault.manifest import MANIFEST_NAME
from pagefault.sources.object_store import store_for_uri
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint

console = Console()
ORIGIN = """
import sys, time
from pagefault.testing import HTTPOrigin
cap = float(sys.argv[2]) or None
with HTTPOrigin(sys.argv[1], bandwidth=cap) as origin:
    print(origin.url, flush=True)
    sys.stdin.read()
"""


def start_origin(root: Path, cap: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", ORIGIN, str(root), str(cap)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def single_stream(url: str, files: list[str]) -> float:
    """Seconds to stream every file with one plain GET each, one after another."""
    started = time.perf_counter()
    for name in files:
        store, key = store_for_uri(f"{url}/{name}")
        for _ in obstore.get(store, key).stream(min_chunk_size=8 << 20):
            pass
    return time.perf_counter() - started


def pagefault_load(uri: str, connections: int, *, verify: bool | None = None) -> tuple[float, bool]:
    started = time.perf_counter()
    stream = pagefault.stream(uri, threads=connections, verify=verify)
    for _ in stream:
        pass
    return time.perf_counter() - started, stream.stats.verified


def runai_load(uri: str, files: list[str]) -> float:
    from runai_model_streamer import SafetensorsStreamer

    started = time.perf_counter()
    with SafetensorsStreamer() as streamer:
        streamer.stream_files([f"{uri}/{name}" for name in files])
        for _, tensor in streamer.get_tensors():
            tensor.clone()  # its buffers are reused: keep a copy, as vLLM does
    return time.perf_counter() - started


def prepare(directory: Path, size: int) -> list[str]:
    if not (directory / "model.safetensors.index.json").exists():
        write_synthetic_checkpoint(directory, SyntheticConfig(size=size, shards=2))
    if not (directory / MANIFEST_NAME).exists():
        manifest = pagefault.make_piece_manifest(directory)
        pagefault.write_piece_manifest(manifest, directory / MANIFEST_NAME)
    return sorted(p.name for p in directory.glob("*.safetensors"))


def http_rows(root: Path, files: list[str], args: argparse.Namespace, total: int) -> list[dict]:
    rows: list[dict] = []
    cap = args.cap
    origin, url = start_origin(root, cap)
    try:
        seconds = single_stream(url + "/model", files)
        rows.append(
            {"variant": "single-stream GET", "connections": 1, "seconds": seconds, "limit": cap}
        )
        for n in args.connections:
            seconds, verified = pagefault_load(f"{url}/model", n, verify=False)
            rows.append(
                {"variant": "pagefault", "connections": n, "seconds": seconds, "limit": n * cap}
            )
        n = max(args.connections)
        seconds, verified = pagefault_load(f"{url}/model", n)
        rows.append(
            {
                "variant": "pagefault verified",
                "connections": n,
                "seconds": seconds,
                "limit": n * cap,
                "verified": verified,
            }
        )
    finally:
        origin.communicate("")
    origin, url = start_origin(root, 0)
    try:
        for n in sorted({max(args.connections), 2 * max(args.connections)}):
            seconds, _ = pagefault_load(f"{url}/model", n, verify=False)
            rows.append(
                {
                    "variant": "pagefault uncapped (loopback/CPU limit)",
                    "connections": n,
                    "seconds": seconds,
                    "limit": None,
                }
            )
        seconds, verified = pagefault_load(f"{url}/model", max(args.connections))
        rows.append(
            {
                "variant": "pagefault uncapped verified",
                "connections": max(args.connections),
                "seconds": seconds,
                "limit": None,
                "verified": verified,
            }
        )
    finally:
        origin.communicate("")
    for row in rows:
        row["MB/s"] = total / row["seconds"] / 1e6
        row["of limit"] = row["MB/s"] * 1e6 / row["limit"] if row["limit"] else None
    return rows


def s3_rows(root: Path, files: list[str], args: argparse.Namespace, total: int) -> list[dict]:
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.moto_port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{args.moto_port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING": "0",
    }
    os.environ.update(env)
    rows = []
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        for name in [*files, "model.safetensors.index.json"]:
            s3.upload_file(str(root / name), "bench", f"model/{name}")
        for _ in range(args.repeat):
            seconds, _ = pagefault_load("s3://bench/model/", max(args.connections), verify=False)
            rows.append({"variant": "pagefault (S3, moto)", "seconds": seconds})
            rows.append(
                {
                    "variant": "runai-model-streamer (S3, moto)",
                    "seconds": runai_load("s3://bench/model", files),
                }
            )
    finally:
        server.stop()
    for row in rows:
        row["MB/s"] = total / row["seconds"] / 1e6
    return rows


def show(title: str, rows: list[dict]) -> None:
    table = Table(title=title)
    keys = [k for k in rows[0] if k not in ("limit",)] if rows else []
    for key in keys:
        table.add_column(key)
    for row in rows:
        table.add_row(
            *(
                f"{row.get(k):.3f}" if isinstance(row.get(k), float) else str(row.get(k, ""))
                for k in keys
            )
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="512MiB")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pagefault-remote-bench"))
    parser.add_argument("--cap", type=parse_size, default=50_000_000, help="bytes/s per connection")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--moto-port", type=int, default=5757)
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    root = args.dir / "model"
    files = prepare(root, parse_size(args.size))
    total = sum((root / f).stat().st_size for f in files)
    console.print(
        f"{total / 1e6:.0f} MB in {len(files)} shards; cap {args.cap / 1e6:.0f} MB/s per connection"
    )
    results: dict[str, object] = {
        "machine": machine_facts(size=args.size),
        "bytes": total,
        "cap": args.cap,
    }
    if not args.no_http:
        results["http"] = rows = http_rows(args.dir, files, args, total)
        show("HTTP origin (per-connection cap)", rows)
    if not args.no_s3:
        results["s3"] = rows = s3_rows(root, files, args, total)
        show("S3-compatible server (moto)", rows)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
