"""Differential conformance: pagefault and the real safetensors package over the corpus.

For every file in ``tests/formats/corpus`` both readers must reach the recorded outcome:
the same files accepted (tensors bit-exact in all three load modes), the same rejected
(a ``FormatError`` naming the file), and for valid files torch cannot hold, a typed
error where safetensors fails while reading the tensor.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import pagefault
from pagefault.errors import CheckpointError, FormatError, PagefaultError
from tests.helpers import same_bytes

CORPUS = Path(__file__).parent / "corpus"
EXPECTED: dict[str, str] = json.loads((CORPUS / "expected.json").read_text())
LOADERS = {
    "mapped": lambda path: pagefault.load(path, mmap=True),
    "private": lambda path: pagefault.load(path, mmap=False),
    "stream": lambda path: dict(pagefault.stream(path, mmap=False)),
}


def reference(path: Path) -> tuple[str, dict[str, torch.Tensor]]:
    """What safetensors makes of ``path``: its outcome and, when it loads, the tensors."""
    try:
        handle = safe_open(path, "pt")
    except Exception:
        return "reject", {}
    with handle:
        try:
            return "accept", {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        except Exception:
            return "unloadable", {}


def test_corpus_is_complete() -> None:
    files = {p.name for p in CORPUS.glob("*.safetensors")}
    assert files == set(EXPECTED)
    assert set(EXPECTED.values()) == {"accept", "reject", "unloadable"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_safetensors_agrees_with_the_recorded_outcome(name: str) -> None:
    assert reference(CORPUS / name)[0] == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(n for n, o in EXPECTED.items() if o == "accept"))
@pytest.mark.parametrize("mode", sorted(LOADERS))
def test_accepted_files_load_bit_exact(name: str, mode: str) -> None:
    path = CORPUS / name
    expected = reference(path)[1]
    loaded = LOADERS[mode](path)
    assert list(loaded) == sorted(
        expected, key=[t.name for t in pagefault.inspect(path).tensors].index
    )
    for key, tensor in expected.items():
        assert same_bytes(loaded[key], tensor), key


@pytest.mark.parametrize("name", sorted(n for n, o in EXPECTED.items() if o == "reject"))
def test_rejected_files_raise_format_error_naming_the_file(name: str) -> None:
    path = CORPUS / name
    with pytest.raises(FormatError, match=name.replace(".", r"\.")):
        pagefault.inspect(path)
    for mode, load in LOADERS.items():
        with pytest.raises(FormatError, match=name.replace(".", r"\.")):
            load(path)
            pytest.fail(f"{mode} accepted {name}")


@pytest.mark.parametrize("name", sorted(n for n, o in EXPECTED.items() if o == "unloadable"))
def test_valid_files_torch_cannot_hold_give_a_typed_error(name: str) -> None:
    path = CORPUS / name
    assert pagefault.inspect(path).tensors  # the header is valid: inspect shows it
    for load in LOADERS.values():
        with pytest.raises(PagefaultError, match="'a'"):
            load(path)


@pytest.mark.parametrize("name", sorted(n for n, o in EXPECTED.items() if o == "accept"))
def test_what_pagefault_saves_opens_in_safetensors(name: str, tmp_path: Path) -> None:
    tensors = pagefault.load(CORPUS / name, mmap=False)
    if not tensors:
        with pytest.raises(CheckpointError, match="empty"):
            pagefault.save(tensors, tmp_path / "out")
        return
    pagefault.save(tensors, tmp_path / "out", metadata={"format": "pt"}).wait()
    reread: dict[str, torch.Tensor] = {}
    for shard in sorted((tmp_path / "out").glob("*.safetensors")):
        with safe_open(shard, "pt") as handle:
            reread.update({key: handle.get_tensor(key) for key in handle.keys()})  # noqa: SIM118
    assert reread.keys() == tensors.keys()
    for key, tensor in tensors.items():
        assert same_bytes(reread[key], tensor), key
