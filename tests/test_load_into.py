"""load_into: in place for real modules, fresh storage for meta ones, Transformers parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import pagefault
from tests.helpers import tiny_llama_config


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(16, 8)
        self.proj = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.register_buffer("scale", torch.ones(8))
        self.register_buffer("cache", torch.zeros(2), persistent=False)


def checkpoint(tmp_path: Path, module: nn.Module, **extra: torch.Tensor) -> Path:
    path = tmp_path / "tiny.safetensors"
    save_file({**{k: v.contiguous() for k, v in module.state_dict().items()}, **extra}, path)
    return path


def test_fills_existing_parameters_in_place(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = Tiny()
    path = checkpoint(tmp_path, source)
    target = Tiny()
    pointers = {n: p.data_ptr() for n, p in target.state_dict().items()}
    keys = pagefault.load_into(target, path)
    assert keys.missing_keys == [] and keys.unexpected_keys == []
    for name, tensor in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], tensor)
        assert target.state_dict()[name].data_ptr() == pointers[name]  # no second copy


def test_converts_into_existing_parameters_of_other_dtype(tmp_path: Path) -> None:
    source = Tiny()
    path = checkpoint(tmp_path, source)
    target = Tiny().to(torch.bfloat16)
    pagefault.load_into(target, path)
    for name, tensor in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], tensor.to(torch.bfloat16)), name


def test_meta_module_is_materialized(tmp_path: Path) -> None:
    source = Tiny()
    path = checkpoint(tmp_path, source)
    with torch.device("meta"):
        target = Tiny()
    target.cache = torch.zeros(2)  # non-persistent buffer: not in checkpoints
    pagefault.load_into(target, path)
    for name, tensor in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], tensor), name
    assert isinstance(target.proj.weight, nn.Parameter) and target.proj.weight.requires_grad
    assert torch.equal(target.proj(torch.ones(8)), source.proj(torch.ones(8)))


def test_meta_buffer_left_behind_is_an_error_when_strict(tmp_path: Path) -> None:
    path = checkpoint(tmp_path, Tiny())
    with torch.device("meta"):
        target = Tiny()
    with pytest.raises(pagefault.LoadIntoError, match="cache"):
        pagefault.load_into(target, path)


def test_strict_mismatches(tmp_path: Path) -> None:
    path = checkpoint(tmp_path, Tiny(), extra=torch.ones(1))
    with pytest.raises(pagefault.LoadIntoError, match="unexpected 1: extra"):
        pagefault.load_into(Tiny(), path)
    keys = pagefault.load_into(Tiny(), path, strict=False)
    assert keys.unexpected_keys == ["extra"] and keys.missing_keys == []
    module = Tiny()
    module.extra_param = nn.Parameter(torch.ones(3))
    with pytest.raises(pagefault.LoadIntoError, match="missing 1: extra_param"):
        pagefault.load_into(module, checkpoint(tmp_path, Tiny()))


def test_shape_mismatch_is_always_an_error(tmp_path: Path) -> None:
    path = checkpoint(tmp_path, Tiny())
    module = Tiny()
    module.proj = nn.Linear(8, 4)
    with pytest.raises(
        pagefault.LoadIntoError,
        match=r"tensor 'proj\.(weight|bias)': checkpoint shape \[8.*module's \[4",
    ):
        pagefault.load_into(module, path, strict=False)


@pytest.mark.parametrize("tied", [False, True])
def test_transformers_model_matches_stock_loading(tmp_path: Path, tied: bool) -> None:
    transformers = pytest.importorskip("transformers")
    accelerate = pytest.importorskip("accelerate")
    config = tiny_llama_config(transformers, num_key_value_heads=2, tie_word_embeddings=tied)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path)
    stock = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with accelerate.init_empty_weights():
        ours = transformers.LlamaForCausalLM(config)
    ours.tie_weights()  # as from_pretrained does: tied names share one parameter
    pagefault.load_into(ours, tmp_path)
    ours.eval()
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(ours(ids).logits, stock(ids).logits)
    if tied:
        assert ours.lm_head.weight is ours.model.embed_tokens.weight


def test_checkpoint_copy_of_a_non_persistent_buffer_is_skipped(tmp_path: Path) -> None:
    """Old checkpoints carry buffers models now compute (BERT's position_ids)."""
    source = Tiny()
    path = checkpoint(tmp_path, source, cache=torch.full((2,), 7.0))
    target = Tiny()
    keys = pagefault.load_into(target, path)
    assert keys.unexpected_keys == [] and keys.missing_keys == []
    assert torch.equal(target.cache, torch.zeros(2))  # computed, never overwritten


def test_transformers_ignore_patterns_from_any_submodule(tmp_path: Path) -> None:
    path = checkpoint(tmp_path, Tiny(), **{"old.rotary.inv_freq": torch.ones(1)})
    module = Tiny()
    module.extra_param = nn.Parameter(torch.ones(3))
    with pytest.raises(pagefault.LoadIntoError) as info:
        pagefault.load_into(module, path)
    message = str(info.value)
    assert "missing 1: extra_param (the module has them, the checkpoint does not)" in message
    assert "unexpected 1: old.rotary.inv_freq (in the checkpoint, not in the module)" in message
    module.norm._keys_to_ignore_on_load_unexpected = [r"rotary\.inv_freq$"]  # type: ignore[assignment]
    module._keys_to_ignore_on_load_missing = {r"^extra_"}  # type: ignore[assignment]
    keys = pagefault.load_into(module, path)
    assert keys.unexpected_keys == [] and keys.missing_keys == []


def test_bert_checkpoint_with_position_ids_loads_as_from_pretrained_does(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=40,
    )  # fmt: skip
    torch.manual_seed(0)
    source = transformers.BertModel(config).eval()
    weights = {k: v.contiguous() for k, v in source.state_dict().items()}
    weights["embeddings.position_ids"] = torch.arange(40).unsqueeze(0)  # as MiniLM ships it
    save_file(weights, tmp_path / "model.safetensors")
    config.save_pretrained(tmp_path)
    stock = transformers.BertModel.from_pretrained(tmp_path).eval()
    ours = transformers.BertModel(config).eval()
    assert pagefault.load_into(ours, tmp_path / "model.safetensors") == ([], [])
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(ours(ids).last_hidden_state, stock(ids).last_hidden_state)
