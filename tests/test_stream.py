"""stream(): file order, early availability, early close, concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import pagefault
from pagefault.pipeline import LoadOptions, open_stream
from pagefault.sources import LocalFileSource, resolve_sources
from pagefault.sources.resolve import Provenance
from tests.helpers import same_bytes


class GatedSource(LocalFileSource):
    """Refuses to read past ``gate_offset`` until the test opens the gate."""

    def __init__(self, path: Path, gate_offset: int) -> None:
        super().__init__(path)
        self.gate_offset = gate_offset
        self.gate = threading.Event()
        self.reads: list[int] = []

    def read_into(self, offset, buffers) -> None:
        if offset >= self.gate_offset and not self.gate.wait(timeout=30):
            raise TimeoutError("the consumer never received the first tensor")
        self.reads.append(offset)
        super().read_into(offset, buffers)


def test_first_tensor_is_yielded_before_last_byte_is_read(single_checkpoint: Path) -> None:
    info = pagefault.inspect(single_checkpoint)
    first = info.tensors[0]
    source = GatedSource(single_checkpoint, gate_offset=first.end)
    model = resolve_sources([source])
    stream = open_stream(model, LoadOptions(mmap=False, threads=2, request_size=64 * 1024))
    name, tensor = next(stream)
    # Nothing past the first tensor can have been read: the gate is still closed.
    assert name == first.name
    assert max(source.reads) < first.end
    assert same_bytes(tensor, load_file(single_checkpoint)[first.name])
    source.gate.set()
    rest = dict(stream)
    assert len(rest) == len(info.tensors) - 1


@pytest.mark.parametrize("mmap", [True, False])
def test_stream_yields_in_file_order(sharded_checkpoint: Path, mmap: bool) -> None:
    names = [name for name, _ in pagefault.stream(sharded_checkpoint, mmap=mmap)]
    assert names == [t.name for t in pagefault.inspect(sharded_checkpoint).tensors]


def test_closing_early_stops_reading(sharded_checkpoint: Path) -> None:
    seen: list[int] = []
    with pagefault.stream(
        sharded_checkpoint, mmap=False, threads=1, request_size=64 * 1024, on_progress=seen.append
    ) as stream:
        next(stream)
    total = pagefault.inspect(sharded_checkpoint).total_bytes
    assert sum(seen) < total
    with pytest.raises(StopIteration):
        next(stream)


def test_concurrent_loads_in_threads(sharded_checkpoint: Path) -> None:
    expected = {}
    for f in sorted(sharded_checkpoint.parent.glob("*.safetensors")):
        expected.update(load_file(f))
    results: dict[int, dict[str, torch.Tensor]] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = pagefault.load(
                sharded_checkpoint, mmap=i % 2 == 0, dtype=torch.float32 if i == 3 else None
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, loaded in results.items():
        for name, tensor in expected.items():
            want = tensor.to(torch.float32) if i == 3 else tensor
            assert same_bytes(loaded[name], want), (i, name)


@pytest.mark.parametrize("mmap", [True, False])
def test_close_model_false_keeps_the_model_open_for_the_next_load(
    sharded_checkpoint: Path, mmap: bool
) -> None:
    """Paged weights read one model many times: a stream must not close it under them."""
    released: list[str] = []
    shards = sorted(sharded_checkpoint.glob("*.safetensors"))
    model = resolve_sources(
        [LocalFileSource(p) for p in shards],
        provenance=Provenance(on_close=(lambda: released.append("lease"),)),
    )
    names = [t.name for t in model.manifest.tensors]
    for part in (names[:2], names[2:]):
        with open_stream(model, LoadOptions(mmap=mmap), only=part, close_model=False) as s:
            assert [name for name, _ in s] == part
        assert released == []
    model.close()
    assert released == ["lease"]
