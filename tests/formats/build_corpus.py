"""Write the conformance corpus: hostile and edge-case safetensors files, each with the
outcome the reference ``safetensors`` package gives it.

Run ``python -m tests.formats.build_corpus`` to rebuild ``tests/formats/corpus/``; the
files are kept in the repository so any reader can be run over them, and
``test_corpus.py`` checks every expectation against the real package on each run.

Outcomes: ``accept`` (``safe_open`` opens it and every tensor loads), ``reject`` (the
header is refused), ``unloadable`` (the header is valid but torch cannot hold a tensor:
F6 dtypes, an odd F4 last dim, dims of 2**63 and more).
"""

from __future__ import annotations

import json
import math
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save

from tests.helpers import TORCH_TO_ST

CORPUS = Path(__file__).parent / "corpus"
EXPECTED = CORPUS / "expected.json"

F32 = b'{"dtype":"F32","shape":[1],"data_offsets":[0,4]'
ONE_F32 = (F32 + b"}", bytes(range(4)))


def raw(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def framed(before: bytes, name: bytes = b"a", after: bytes = b"") -> bytes:
    """One F32 tensor called ``name``, with ``before``/``after`` around the JSON object."""
    return raw(before + b'{"' + name + b'":' + ONE_F32[0] + b"}" + after, ONE_F32[1])


def entry(extra: bytes) -> bytes:
    """One F32 tensor ``a`` whose entry also holds ``extra`` (a JSON fragment)."""
    return raw(b'{"a":' + F32 + b"," + extra + b"}}", bytes(4))


def tensor(dtype: str, shape: list[int], data: bytes, name: str = "a") -> bytes:
    header = {name: {"dtype": dtype, "shape": shape, "data_offsets": [0, len(data)]}}
    return raw(json.dumps(header).encode(), data)


def patterned(count: int) -> bytes:
    return bytes((i * 37 + 11) % 256 for i in range(count))


def every_torch_dtype() -> bytes:
    """Written by safetensors itself: every dtype torch shares with it, odd shapes."""
    tensors = {}
    for i, dtype in enumerate(TORCH_TO_ST):  # pagefault's own table, so none is missed
        for label, shape in (("scalar", ()), ("empty", (0, 3)), ("odd", (3, 5, 7))):
            if dtype == torch.float4_e2m1fn_x2 and not shape:
                continue  # one F4 value is half a byte: no scalars
            count = dtype.itemsize * math.prod(shape)
            gen = torch.Generator().manual_seed(i)
            data = torch.randint(0, 256, (count,), dtype=torch.uint8, generator=gen)
            if dtype == torch.bool:
                data = data % 2
            tensors[f"{dtype}-{label}"] = data.view(dtype).reshape(shape)
    return save(tensors, metadata={"format": "pt"})


def deep(levels: int) -> bytes:
    return entry(b'"x":' + b"[" * levels + b"]" * levels)


ACCEPT: dict[str, Callable[[], bytes]] = {
    "every-torch-dtype": every_torch_dtype,
    "f4-packed": lambda: tensor("F4", [2, 4], patterned(4)),
    "f8-fnuz": lambda: raw(
        b'{"a":{"dtype":"F8_E4M3FNUZ","shape":[3],"data_offsets":[0,3]},'
        b'"b":{"dtype":"F8_E5M2FNUZ","shape":[2],"data_offsets":[3,5]}}',
        patterned(5),
    ),
    "empty-header": lambda: raw(b"{}"),
    "metadata-only": lambda: raw(b'{"__metadata__":{"format":"pt"}}'),
    "metadata-null": lambda: framed(b"", b'__metadata__":null,"a'),
    "leading-whitespace": lambda: framed(b" \n\t\r"),
    "trailing-padding": lambda: framed(b"", after=b"      \n"),
    "extra-field": lambda: entry(b'"x":1'),
    "extra-field-nested": lambda: entry(b'"x":{"y":[1,"z",null,true,-0,-5,1e300,1e-400]}'),
    "extra-field-repeated": lambda: entry(b'"x":1,"x":"2"'),
    "extra-field-big-integer": lambda: entry(b'"x":' + b"9" * 300),
    "extra-field-depth-125": lambda: deep(125),
    "repeated-tensor-last-wins": lambda: raw(
        b'{"a":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},"a":' + ONE_F32[0] + b"}",
        ONE_F32[1],
    ),
    "repeated-tensor-bad-offsets-first": lambda: raw(
        b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[9,4]},"a":' + ONE_F32[0] + b"}",
        ONE_F32[1],
    ),
    "repeated-metadata-key": lambda: raw(b'{"__metadata__":{"k":"1","k":"2"}}'),
    "zero-elements-huge-dims": lambda: tensor("F32", [0, 2**32, 2**32], b""),
    "zero-elements-dims-2e62": lambda: tensor("F32", [2**62, 0, 2**62], b""),
    "zero-elements-dim-2e63-minus-1": lambda: tensor("BF16", [0, 2**63 - 1], b""),
    "rank-300": lambda: tensor("U8", [1] * 300, b"\x07"),
    "offsets-listed-out-of-order": lambda: raw(
        b'{"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},'
        b'"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        patterned(6),
    ),
    "empty-tensors-share-offset": lambda: raw(
        b'{"e":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},'
        b'"f":{"dtype":"I64","shape":[0,3],"data_offsets":[0,0]},"a":' + ONE_F32[0] + b"}",
        ONE_F32[1],
    ),
    "unicode-names": lambda: raw(
        '{"\\ud83d\\ude00":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
        '"поток.weight":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},'
        '"nul\\u0000name":{"dtype":"U8","shape":[1],"data_offsets":[2,3]},'
        '"":{"dtype":"U8","shape":[1],"data_offsets":[3,4]}}'.encode(),
        patterned(4),
    ),
    "escaped-field-names": lambda: raw(
        b'{"a":{"\\u0064type":"F32","sha\\u0070e":[1],"data_offsets":[0,4]}}', bytes(4)
    ),
    "unaligned-offsets": lambda: raw(
        b'{"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},'
        b'"b":{"dtype":"F64","shape":[2],"data_offsets":[3,19]},'
        b'"c":{"dtype":"BF16","shape":[3],"data_offsets":[19,25]}}',
        patterned(25),
    ),
}

REJECT: dict[str, Callable[[], bytes]] = {
    "empty-file": lambda: b"",
    "seven-bytes": lambda: b"\x02\x00\x00\x00\x00\x00\x00",
    "header-length-zero": lambda: raw(b""),
    "header-length-one": lambda: raw(b"{"),
    "header-too-large": lambda: struct.pack("<Q", 100_000_001) + b"{}",
    "header-past-eof": lambda: struct.pack("<Q", 64) + b"{}",
    "byte-order-mark": lambda: framed(b"\xef\xbb\xbf"),
    "form-feed-before-object": lambda: framed(b"\x0c"),
    "nul-after-object": lambda: framed(b"", after=b"\x00"),
    "invalid-utf8": lambda: framed(b"", b"\xff"),
    "utf8-encoded-surrogate": lambda: framed(b"", b"\xed\xa0\x80"),
    "control-character-in-name": lambda: framed(b"", b"a\x01"),
    "not-an-object": lambda: raw(b"[1,2]"),
    "tensor-is-integer": lambda: raw(b'{"a":1}'),
    "tensor-is-null": lambda: raw(b'{"a":null}'),
    "unknown-dtype": lambda: tensor("F12", [1], bytes(4)),
    "lowercase-dtype": lambda: tensor("f32", [1], bytes(4)),
    "missing-dtype": lambda: raw(b'{"a":{"shape":[1],"data_offsets":[0,4]}}', bytes(4)),
    "repeated-dtype-field": lambda: entry(b'"dtype":"F32"'),
    "repeated-metadata": lambda: raw(b'{"__metadata__":{},"__metadata__":{}}'),
    "repeated-tensor-bad-first": lambda: raw(
        b'{"a":{"dtype":"X","shape":[1],"data_offsets":[0,4]},"a":' + ONE_F32[0] + b"}",
        ONE_F32[1],
    ),
    "metadata-integer-value": lambda: raw(b'{"__metadata__":{"k":1}}'),
    "metadata-repeated-key-integer-first": lambda: raw(b'{"__metadata__":{"k":1,"k":"2"}}'),
    "metadata-list": lambda: raw(b'{"__metadata__":[]}'),
    "negative-zero-dim": lambda: raw(b'{"a":{"dtype":"F32","shape":[-0],"data_offsets":[0,0]}}'),
    "negative-zero-offset": lambda: raw(b'{"a":{"dtype":"F32","shape":[0],"data_offsets":[-0,0]}}'),
    "negative-dim": lambda: tensor("F32", [-1], bytes(4)),
    "float-dim": lambda: raw(b'{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}', bytes(4)),
    "exponent-dim": lambda: raw(
        b'{"a":{"dtype":"F32","shape":[1e0],"data_offsets":[0,4]}}', bytes(4)
    ),
    "dim-2e64": lambda: tensor("F32", [0, 2**64], b""),
    "dim-1e23": lambda: tensor("F32", [0, 10**23], b""),
    "three-offsets": lambda: raw(
        b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,4]}}', bytes(4)
    ),
    "offsets-reversed": lambda: raw(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}'),
    "element-count-overflow-before-zero": lambda: tensor("F32", [2**32, 2**32, 0], b""),
    "bit-count-overflow": lambda: raw(
        b'{"a":{"dtype":"F32","shape":[%d],"data_offsets":[0,0]}}' % 2**60
    ),
    "f4-odd-element-count": lambda: tensor("F4", [3], bytes(2)),
    "size-mismatch": lambda: tensor("F32", [3], bytes(8)),
    "hole": lambda: raw(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', bytes(8)),
    "overlap": lambda: raw(
        b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
        b'"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
        bytes(8),
    ),
    "trailing-data": lambda: raw(b'{"a":' + ONE_F32[0] + b"}", bytes(5)),
    "truncated-data": lambda: raw(b'{"a":' + ONE_F32[0] + b"}", bytes(3)),
    "lone-high-surrogate-name": lambda: framed(b"", b"\\ud800"),
    "lone-low-surrogate-name": lambda: framed(b"", b"\\udc00"),
    "lone-surrogate-metadata": lambda: raw(b'{"__metadata__":{"k":"\\ud800x"}}'),
    "lone-surrogate-extra-field": lambda: entry(b'"x":["\\udfff"]'),
    "nan-in-extra-field": lambda: entry(b'"x":NaN'),
    "infinity-in-extra-field": lambda: entry(b'"x":-Infinity'),
    "float-out-of-range-in-extra-field": lambda: entry(b'"x":1e400'),
    "integer-out-of-range-in-extra-field": lambda: entry(b'"x":' + b"9" * 400),
    "extra-field-depth-126": lambda: deep(126),
    "extra-field-depth-2000": lambda: deep(2000),
}

UNLOADABLE: dict[str, Callable[[], bytes]] = {
    "f6-e2m3": lambda: tensor("F6_E2M3", [4], patterned(3)),
    "f6-e3m2": lambda: tensor("F6_E3M2", [4], patterned(3)),
    "f4-odd-last-dim": lambda: tensor("F4", [4, 1], patterned(2)),
    "zero-elements-dim-2e63": lambda: tensor("F32", [0, 2**63], b""),
    "zero-elements-dim-u64-max": lambda: tensor("F32", [0, 2**64 - 1], b""),
}


def build() -> dict[str, str]:
    """Rewrite the corpus directory; return file name -> expected outcome."""
    if CORPUS.exists():
        shutil.rmtree(CORPUS)
    CORPUS.mkdir()
    expected: dict[str, str] = {}
    for outcome, cases in (("accept", ACCEPT), ("reject", REJECT), ("unloadable", UNLOADABLE)):
        for name, make in cases.items():
            file_name = f"{name}.safetensors"
            (CORPUS / file_name).write_bytes(make())
            expected[file_name] = outcome
    EXPECTED.write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    return expected


if __name__ == "__main__":
    print(f"wrote {len(build())} files to {CORPUS}")
