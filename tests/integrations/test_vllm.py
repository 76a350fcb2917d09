"""The vLLM loader plugin against vLLM's real registry and loader classes (skipped where
vllm does not import; run it in an environment with vLLM: see bench/vllm_check.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from pagefault.errors import ConfigError, LoadIntoError
from pagefault.integrations.vllm import register, weights_source
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


def test_registered_loader_streams_into_the_model(tmp_path: Path) -> None:
    pytest.importorskip("vllm")
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
    partial = write_tensors(tmp_path / "partial.safetensors", {"proj.bias": weights["proj.bias"]})
    with pytest.raises(LoadIntoError, match="proj.weight"):
        loader.load_weights(VllmStyleModel(), SimpleNamespace(model=str(partial), revision=None))
