"""Header parsing and loading at the sizes the conformance rules must stay fast on.

- ``parse_header`` of a 20,000-tensor header (mean of 5) and of a 99 MB header (one
  metadata string);
- the 20,000-tensor file loaded in the three modes (mapped, private, stream), each
  checked bit-exact against ``safetensors.torch.load_file``.

Usage: ``python bench/header_bench.py`` (prints one line per measurement).
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

import pagefault
from pagefault.formats import parse_header

TENSORS = 20_000


def write(path: Path, header: dict, data: bytes) -> bytes:
    body = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body)) + body + data)
    return body


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="pagefault-header-bench-"))
    many = {
        f"model.layers.{i}.mlp.weight": {
            "dtype": "BF16",
            "shape": [3],
            "data_offsets": [6 * i, 6 * i + 6],
        }
        for i in range(TENSORS)
    }
    data = os.urandom(6 * TENSORS)
    body = write(work / "many.safetensors", many, data)
    started = time.perf_counter()
    for _ in range(5):
        parse_header(body, file_size=8 + len(body) + len(data), name="many")
    print(f"parse {TENSORS} tensors ({len(body):,} B header): "
          f"{(time.perf_counter() - started) / 5 * 1000:.0f} ms")  # fmt: skip

    big = {
        "__metadata__": {"k": "x" * 99_000_000},
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
    }
    big_body = write(work / "big.safetensors", big, os.urandom(8))
    started = time.perf_counter()
    parse_header(big_body, file_size=8 + len(big_body) + 8, name="big")
    print(f"parse a {len(big_body):,} B header: {time.perf_counter() - started:.2f} s")

    path = work / "many.safetensors"
    want = load_file(path)
    loaders = {
        "mapped": lambda: pagefault.load(path, mmap=True),
        "private": lambda: pagefault.load(path, mmap=False),
        "stream": lambda: dict(pagefault.stream(path, mmap=False)),
    }
    for mode, load in loaders.items():
        started = time.perf_counter()
        got = load()
        seconds = time.perf_counter() - started
        exact = got.keys() == want.keys() and all(
            torch.equal(got[k].view(torch.int16), want[k].view(torch.int16)) for k in want
        )
        print(f"load {TENSORS} tensors {mode}: {seconds:.2f} s, bit-exact={exact}")


if __name__ == "__main__":
    main()
