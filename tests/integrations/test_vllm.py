"""The vLLM loader plugin against vLLM's real registry and loader classes (skipped where
vllm does not import; run it in an environment with vLLM: see bench/vllm_check.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from pagefault.errors import ConfigError, LoadIntoError
from pagefault.integrations.vllm import register, vllm_compile_cache, weights_source
from tests.helpers import write_tensors


def test_where_the_weights_come_from(tmp_path: Path) -> None:
    assert weights_source(str(tmp_path), None, {}) == str(tmp_path)
    assert weights_source("Qwen/Qwen3-0.6B", None, {}) == "hf://Qwen/Qwen3-0.6B"
    assert weights_source("Qwen/Qwen3-0.6B", "abc", {}) == "hf://Qwen/Qwen3-0.6B@abc"
    assert weights_source("x/y", None, {"uri": "s3://b/m/"}) == "s3://b/m/"
    with pytest.raises(ConfigError, match="unknown \\['speed'\\]"):
        weights_source("x/y", None, {"speed": 1})


class VllmStyleModel(nn.Module):
    """What vLLM models have: ``load_weights(iterable of (name, tensor)) -> loaded names``."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 3)

    def load_weights(self, weights):  # type: ignore[no-untyped-def]
        params = dict(self.named_parameters())
        loaded = set()
        for name, tensor in weights:
            params[name].data.copy_(tensor)
            loaded.add(name)
        return loaded


def test_registered_loader_streams_into_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("vllm")
    monkeypatch.setenv("VLLM_CACHE_ROOT", str(tmp_path / "vllm-cache"))
    monkeypatch.setenv("PAGEFAULT_CACHE_DIR", str(tmp_path / "node"))
    monkeypatch.setenv("PAGEFAULT_CACHE_RAM_DIR", "off")
    from vllm.config.load import LoadConfig  # noqa: PLC0415 - only where vllm imports
    from vllm.model_executor.model_loader import get_model_loader  # noqa: PLC0415

    register()
    weights = {"proj.weight": torch.randn(3, 4), "proj.bias": torch.randn(3)}
    path = write_tensors(tmp_path / "model.safetensors", weights)
    loader = get_model_loader(LoadConfig(load_format="pagefault"))
    assert type(loader).__name__ == "PagefaultModelLoader"
    model = VllmStyleModel()
    loader.download_model(SimpleNamespace(model=str(path), revision=None))
    loader.load_weights(model, SimpleNamespace(model=str(path), revision=None))
    assert torch.equal(model.proj.weight, weights["proj.weight"])
    assert loader.compile_cache.directory == tmp_path / "vllm-cache" / "torch_compile_cache"
    partial = write_tensors(tmp_path / "partial.safetensors", {"proj.bias": weights["proj.bias"]})
    with pytest.raises(LoadIntoError, match="proj.weight"):
        loader.load_weights(VllmStyleModel(), SimpleNamespace(model=str(partial), revision=None))


def test_vllm_compile_cache_travels_through_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What vLLM compiled on one node lands in another node's cache directory, merged with
    what is already there (no vLLM needed: the directory is plain files)."""
    monkeypatch.setenv("PAGEFAULT_CACHE_RAM_DIR", "off")
    store = f"file://{tmp_path / 'store'}"
    monkeypatch.setenv("PAGEFAULT_CACHE_DIR", str(tmp_path / "node-a"))
    first = tmp_path / "vllm-a" / "torch_compile_cache" / "3f2a" / "rank_0_0"
    first.mkdir(parents=True)
    cached = vllm_compile_cache(tmp_path / "vllm-a", "Qwen/Qwen3-0.6B", "0.33.0", store)
    assert cached.hit is None  # nothing shared yet
    (first / "model.so").write_bytes(b"compiled")  # vLLM's warm-up compiles
    cached.publish()
    assert cached.published == ["node", store]

    monkeypatch.setenv("PAGEFAULT_CACHE_DIR", str(tmp_path / "node-b"))  # another node
    other = tmp_path / "vllm-b" / "torch_compile_cache" / "other-model"
    other.mkdir(parents=True)
    (other / "kept").write_bytes(b"mine")
    restored = vllm_compile_cache(tmp_path / "vllm-b", "Qwen/Qwen3-0.6B", "0.33.0", store)
    assert restored.hit == store
    root = tmp_path / "vllm-b" / "torch_compile_cache"
    assert (root / "3f2a" / "rank_0_0" / "model.so").read_bytes() == b"compiled"
    assert (other / "kept").read_bytes() == b"mine"
