"""``load_into`` an already materialized model against a raw read into its parameters.

The model is built from the checkpoint's own tensor table (every parameter allocated
and written, so its pages are faulted); then, alternating in one process, ``raw``
reads each tensor's byte range straight into its parameter with ``preadv`` from two
threads (the limit for this layout: one destination per tensor), and ``load_into``
does the same job through pagefault. Page cache hot. Target (issue 23): load_into
>= 0.8x raw.

Usage: ``python bench/load_into_bench.py [--dir /tmp/pagefault-bench] [--rounds 5]``
(the checkpoint ``load_bench.py`` writes).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

import torch
from torch import nn

import pagefault
from pagefault.tensors.dtypes import to_torch_dtype, torch_shape
from pagefault.tensors.memory import tensor_bytes
from variants import parallel_preadv


def build(manifest: pagefault.Manifest) -> nn.Module:
    """A module whose parameter names and shapes are the checkpoint's, memory faulted."""
    root = nn.Module()
    for entry in manifest.tensors:
        *path, leaf = entry.name.split(".")
        owner = root
        for part in path:
            if not hasattr(owner, part):
                owner.add_module(part, nn.Module())
            owner = getattr(owner, part)
        dtype = to_torch_dtype(entry.dtype, tensor=entry.name)
        tensor = torch.empty(torch_shape(entry.dtype, entry.shape, tensor=entry.name), dtype=dtype)
        tensor_bytes(tensor)[:] = b"\x01" * entry.nbytes if entry.nbytes else b""
        owner.register_parameter(leaf, nn.Parameter(tensor, requires_grad=False))
    return root


def raw(manifest: pagefault.Manifest, module: nn.Module, directory: Path) -> float:
    """Each tensor's range read straight into its parameter (two threads)."""
    params = dict(module.named_parameters())
    entries = sorted(manifest.tensors, key=lambda e: (e.file_index, e.start))
    return parallel_preadv(
        [
            (
                directory / manifest.files[e.file_index].name,
                e.start,
                tensor_bytes(params[e.name].data),
            )
            for e in entries
            if e.nbytes
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pagefault-bench"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    index = next(args.dir.glob("*.index.json"), None) or next(args.dir.glob("*.safetensors"))
    manifest = pagefault.inspect(index)
    module = build(manifest)
    for f in args.dir.glob("*.safetensors"):
        subprocess.run(["cat", str(f)], stdout=subprocess.DEVNULL, check=True)
    times: dict[str, list[float]] = {"raw": [], "load_into": []}
    for round_ in range(args.rounds):
        for name in ("raw", "load_into") if round_ % 2 == 0 else ("load_into", "raw"):
            if name == "raw":
                times[name].append(raw(manifest, module, args.dir))
            else:
                started = time.perf_counter()
                pagefault.load_into(module, index)
                times[name].append(time.perf_counter() - started)
    size = manifest.total_bytes
    medians = {k: statistics.median(v) for k, v in times.items()}
    for name, seconds in medians.items():
        runs = " ".join(f"{t:.3f}" for t in times[name])
        print(f"{name:10} median {seconds:.3f} s  {size / seconds / 1e9:.2f} GB/s  ({runs})")
    print(f"load_into / raw: {medians['raw'] / medians['load_into']:.2f}x (target >= 0.8x)")


if __name__ == "__main__":
    main()
