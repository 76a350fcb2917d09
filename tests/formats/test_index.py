from __future__ import annotations

import json

import pytest

from pagefault.errors import FormatError
from pagefault.formats import parse_index


def test_shards_in_first_appearance_order() -> None:
    data = {"weight_map": {"a": "m-2.safetensors", "b": "m-1.safetensors", "c": "m-2.safetensors"}}
    index = parse_index(json.dumps(data).encode(), name="i.json")
    assert index.shards == ("m-2.safetensors", "m-1.safetensors")


@pytest.mark.parametrize(
    "shard", ["../x.safetensors", "/etc/passwd", "a/b.safetensors", "a\\b.safetensors", "x.bin", ""]
)
def test_shard_names_cannot_escape_directory(shard: str) -> None:
    data = {"weight_map": {"a": shard}}
    with pytest.raises(FormatError, match="plain"):
        parse_index(json.dumps(data).encode(), name="i.json")


@pytest.mark.parametrize(
    "data", [b"[]", b"{}", b'{"weight_map": {}}', b"\xff", b'{"weight_map": 1}']
)
def test_malformed_index(data: bytes) -> None:
    with pytest.raises(FormatError, match="i.json"):
        parse_index(data, name="i.json")
