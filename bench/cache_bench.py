"""Node-cache benchmark: warm loads from the RAM tier vs the raw /dev/shm read limit.

One run measures, side by side on one machine:

* a cold load through an empty cache from an HTTP origin on loopback (tees every piece);
* warm loads of the same URI (RAM tier hits), each timed around ``pagefault.load``
  (HEAD revalidation, catalog, headers and all), and the origin's byte counter across them;
* the same warm loads with ``mmap=False`` (read into a fresh arena, as a copy must);
* the raw limit: the same piece files read from /dev/shm with parallel ``preadv`` into a
  pre-faulted buffer (pure copy bandwidth) and into a fresh one (what any copy pays);
* N processes started together on the uncached model: origin egress / model size.

Every measurement runs in its own process. Usage:

    python bench/cache_bench.py --size 4GiB [--repeat 3] [--processes 4] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).parent))
import pagefault
from load_bench import machine_facts, run_json
from pagefault.cli.output import parse_size
from pagefault.manifest import MANIFEST_NAME
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint

console = Console()
ORIGIN = """
import sys
from pagefault.testing import HTTPOrigin
with HTTPOrigin(sys.argv[1]) as origin:
    print(origin.url, flush=True)
    for line in sys.stdin:
        print(origin.bytes_sent, flush=True)
"""
LOAD = """
import json, sys, time, xxhash
import pagefault
started = time.perf_counter()
stream = pagefault.stream(sys.argv[1], mmap=False if sys.argv[3] == "private" else None)
tensors = dict(stream)
seconds = time.perf_counter() - started
digest = xxhash.xxh3_64()
if sys.argv[2] == "digest":
    for name, t in tensors.items():
        digest.update(t.contiguous().view(-1).view(__import__("torch").uint8).numpy())
print(json.dumps({"seconds": seconds, "bytes": stream.stats.bytes, "mode": stream.stats.mode,
                  "cache": stream.stats.cache, "digest": digest.hexdigest()}))
"""
RAW = """
import json, mmap, os, sys, time
from concurrent.futures import ThreadPoolExecutor
paths = sorted(p for p in __import__("pathlib").Path(sys.argv[1]).rglob("*") if p.is_file()
               and len(p.name) == 64)
sizes = [p.stat().st_size - 16 for p in paths]
offsets = [sum(sizes[:i]) for i in range(len(sizes))]
total = sum(sizes)
buf = mmap.mmap(-1, total)
if sys.argv[2] == "prefaulted":
    view = memoryview(buf)
    for page in range(0, total, mmap.PAGESIZE):
        view[page] = 0
view = memoryview(buf)
def read(i):
    fd = os.open(paths[i], os.O_RDONLY)
    try:
        done = 0
        while done < sizes[i]:
            done += os.preadv(fd, [view[offsets[i] + done : offsets[i] + sizes[i]]], done)
    finally:
        os.close(fd)
started = time.perf_counter()
with ThreadPoolExecutor(os.cpu_count()) as pool:
    list(pool.map(read, range(len(paths))))
print(json.dumps({"seconds": time.perf_counter() - started, "bytes": total}))
"""


class Origin:
    """The model's HTTP origin in its own process; ``sent()`` reads its byte counter."""

    def __init__(self, root: Path) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", ORIGIN, str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin, self._stdout = self._proc.stdin, self._proc.stdout
        self.url = self._stdout.readline().strip()

    def sent(self) -> int:
        self._stdin.write("?\n")
        self._stdin.flush()
        return int(self._stdout.readline())

    def close(self) -> None:
        self._stdin.close()
        self._proc.wait()


def prepare(directory: Path, size: int) -> Path:
    model = directory / "model"
    if not (model / MANIFEST_NAME).exists():
        console.print(f"writing a {size:,}-byte model and its piece manifest under {model}")
        write_synthetic_checkpoint(model, SyntheticConfig(size=size, shards=2, seed=1))
        manifest = pagefault.make_piece_manifest(model)
        pagefault.write_piece_manifest(manifest, str(model / MANIFEST_NAME))
    return model


def cache_env(ram: Path, disk: Path, size: int) -> dict[str, str]:
    return os.environ | {
        "PAGEFAULT_CACHE_RAM_DIR": str(ram),
        "PAGEFAULT_CACHE_DIR": str(disk),
        "PAGEFAULT_CACHE_RAM_CAPACITY": str(2 * size),
        "PAGEFAULT_CACHE_DISK_CAPACITY": str(2 * size),
    }


def fresh(*directories: Path) -> None:
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)


def load(url: str, env: dict[str, str], *, digest: bool = False, mode: str = "auto") -> dict:
    command = [sys.executable, "-c", LOAD, url, "digest" if digest else "-", mode]
    return run_json(command, name="load", env=env)


def raw(ram: Path, how: str) -> dict:
    return run_json([sys.executable, "-c", RAW, str(ram / "pieces"), how], name=how)


def together(url: str, env: dict[str, str], processes: int) -> list[dict]:
    command = [sys.executable, "-c", LOAD, url, "digest", "auto"]
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(processes)
    ]
    outputs = [proc.communicate()[0] for proc in procs]
    return [json.loads(out.strip().splitlines()[-1]) for out in outputs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4GiB")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pagefault-cache-bench"))
    parser.add_argument("--ram-dir", type=Path, default=Path("/dev/shm/pagefault-cache-bench"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    size = parse_size(args.size)
    model = prepare(args.dir, size)
    model_bytes = sum(p.stat().st_size for p in model.iterdir())
    ram, disk = args.ram_dir, args.dir / "disk-tier"
    env = cache_env(ram, disk, size)
    origin = Origin(args.dir)
    url = origin.url + "/model"
    results: dict[str, object] = {"model_bytes": model_bytes}
    try:
        fresh(ram, disk)
        before = origin.sent()
        cold = load(url, env)
        results["cold"] = cold | {"origin_bytes": origin.sent() - before}
        console.print(f"cold load through the cache: {cold['seconds']:.2f} s")
        warm, private, prefaulted, fresh_buffer = [], [], [], []
        before = origin.sent()
        for _ in range(args.repeat):
            warm.append(load(url, env))
            private.append(load(url, env, mode="private"))
            prefaulted.append(raw(ram, "prefaulted"))
            fresh_buffer.append(raw(ram, "fresh"))
        results["warm_origin_bytes"] = origin.sent() - before
        for name, runs in [
            ("warm", warm),
            ("warm_private", private),
            ("raw_prefaulted", prefaulted),
            ("raw_fresh", fresh_buffer),
        ]:
            best = min(runs, key=lambda r: r["seconds"])
            results[name] = best | {"gbps": best["bytes"] / best["seconds"] / 1e9, "runs": runs}
        results["together"] = _together(url, env, args.processes, origin, model_bytes, ram, disk)
    finally:
        origin.close()
        fresh(ram)
    report(results)
    if args.out:
        facts = machine_facts(size=args.size, repeat=args.repeat, processes=args.processes)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": facts, **results}, indent=2))


def _together(
    url: str, env: dict[str, str], processes: int, origin: Origin, model_bytes: int, *dirs: Path
) -> dict:
    fresh(*dirs)
    before = origin.sent()
    runs = together(url, env, processes)
    egress = origin.sent() - before
    return {
        "processes": processes,
        "origin_bytes": egress,
        "egress_ratio": egress / model_bytes,
        "identical": len({r["digest"] for r in runs}) == 1,
        "seconds": [round(r["seconds"], 2) for r in runs],
    }


def report(results: dict) -> None:
    warm, strict, loose = results["warm"], results["raw_prefaulted"], results["raw_fresh"]
    console.print(
        f"warm load {warm['gbps']:.2f} GB/s ({warm['mode']}), raw /dev/shm read "
        f"{strict['gbps']:.2f} GB/s into a pre-faulted buffer, {loose['gbps']:.2f} GB/s into "
        f"a fresh one: {warm['gbps'] / strict['gbps']:.2f}x and {warm['gbps'] / loose['gbps']:.2f}x"
    )
    private = results["warm_private"]
    console.print(
        f"warm load with mmap=False (preadv into a fresh arena) {private['gbps']:.2f} GB/s: "
        f"{private['gbps'] / loose['gbps']:.2f}x the raw read into fresh memory"
    )
    console.print(f"origin bytes during warm loads: {results['warm_origin_bytes']}")
    together = results["together"]
    console.print(
        f"{together['processes']} processes at once: origin sent {together['egress_ratio']:.3f}x "
        f"the model, identical tensors: {together['identical']}, seconds {together['seconds']}"
    )


if __name__ == "__main__":
    main()
