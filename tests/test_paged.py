"""Paged weights: exact outputs at every budget, the eviction policy, serve while loading,
and the errors, on tiny Transformers models (Llama; GPT-2 with tied embeddings)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import pagefault
from pagefault.paging import _move_computed_buffers
from pagefault.paging.depth import DepthTrial, modelled_depth
from pagefault.paging.residency import Residency
from pagefault.sources.local import LocalFileSource
from pagefault.testing.http_origin import HTTPOrigin

from .helpers import tiny_llama_config

transformers = pytest.importorskip("transformers")
accelerate = pytest.importorskip("accelerate")

IDS = torch.randint(0, 128, (1, 10), generator=torch.Generator().manual_seed(3))


def _saved(tmp_path: Path, model: nn.Module, *, shard: str = "200KB") -> nn.Module:
    model.save_pretrained(tmp_path, max_shard_size=shard)
    return model.eval()


def _llama(layers: int = 6) -> Any:
    return tiny_llama_config(transformers, num_hidden_layers=layers, num_key_value_heads=2)


def _empty(cls: Any, config: Any) -> nn.Module:
    with accelerate.init_empty_weights():
        model = cls(config)
    model.tie_weights()
    return model.eval()


def _weight_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


@pytest.fixture
def llama(tmp_path: Path) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    return _saved(tmp_path, transformers.LlamaForCausalLM(_llama())), tmp_path


@pytest.mark.parametrize("mmap", [None, False])
@pytest.mark.parametrize("fraction", [None, 0.5, 1.0, 2.0])
def test_llama_generates_exactly_at_every_budget(llama, fraction, mmap) -> None:
    reference, path = llama
    budget = None if fraction is None else int(_weight_bytes(reference) * fraction)
    model = _empty(transformers.LlamaForCausalLM, reference.config)
    with torch.no_grad():
        want = reference.generate(IDS, max_new_tokens=6, do_sample=False)
        want_logits = reference(IDS).logits
        with pagefault.paged(model, path, budget=budget, mmap=mmap, prefetch=1) as pm:
            got = model.generate(IDS, max_new_tokens=6, do_sample=False)
            assert torch.equal(got, want)
            assert torch.equal(pm(IDS).logits, want_logits)
            stats = pm.stats
    assert stats.groups == 6
    slots = "per-group" if budget is None else ("small-pages", "huge-pages", "hugetlb-pool")
    assert stats.pages == "file-mapping" if mmap is None else stats.pages in slots
    if fraction == 0.5:  # fewer slots than layers: every forward streams every layer
        assert stats.slots < stats.groups
        assert stats.evictions > 0 and stats.misses == 0
        assert stats.bytes_streamed >= stats.forwards * stats.groups * stats.slot_bytes * 0.9
        assert stats.resident_bytes + stats.slots * stats.slot_bytes <= budget
        assert len(stats.stall_s) == stats.forwards == 7


def test_minimum_budget_runs_one_layer_at_a_time(llama: tuple[nn.Module, Path]) -> None:
    reference, path = llama
    model = _empty(transformers.LlamaForCausalLM, reference.config)
    with pytest.raises(pagefault.ConfigError) as tiny:
        pagefault.paged(model, path, budget=1000)
    message = str(tiny.value)
    assert "model.layers.0" in message and "minimum" in message
    minimum = int(message.split("minimum ")[1].split(" ", maxsplit=1)[0])
    with pagefault.paged(model, path, budget=minimum, prefetch=3) as pm, torch.no_grad():
        assert torch.equal(pm(IDS).logits, reference(IDS).logits)
        assert pm.stats.slots == 1 and pm.stats.prefetch_depth == 0


def test_gpt2_tied_embeddings_stay_tied_and_exact(tmp_path: Path) -> None:
    config = transformers.GPT2Config(n_embd=64, n_layer=4, n_head=4, vocab_size=128, n_positions=64)
    torch.manual_seed(0)
    reference = _saved(tmp_path, transformers.GPT2LMHeadModel(config))
    model = _empty(transformers.GPT2LMHeadModel, config)
    budget = int(_weight_bytes(reference) * 0.6)
    with pagefault.paged(model, tmp_path, budget=budget) as pm, torch.no_grad():
        got = model.generate(IDS, max_new_tokens=5, do_sample=False, pad_token_id=0)
        assert torch.equal(
            got, reference.generate(IDS, max_new_tokens=5, do_sample=False, pad_token_id=0)
        )
        assert model.lm_head.weight is model.transformer.wte.weight
        assert pm.stats.slots < pm.stats.groups


def test_dtype_converts_floating_weights(llama: tuple[nn.Module, Path]) -> None:
    reference, path = llama
    model = _empty(transformers.LlamaForCausalLM, reference.config)
    with pagefault.paged(model, path, budget="10MiB", dtype="bfloat16") as pm, torch.no_grad():
        pm(IDS)  # a layer is bound to its slot when it first runs
        weight = model.model.layers[2].mlp.up_proj.weight
        assert weight.dtype == torch.bfloat16
        assert torch.equal(weight, reference.model.layers[2].mlp.up_proj.weight.bfloat16())


class Reversed(nn.Module):
    """Runs its layers last to first: the first forward must learn that order."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(16, 16) for _ in range(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            x = layer(x)
        return x


def test_execution_order_is_learned_on_the_first_forward(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = Reversed()
    save_file(reference.state_dict(), tmp_path / "model.safetensors")
    with torch.device("meta"):
        model = Reversed()
    layer = 16 * 16 * 4 + 16 * 4
    x = torch.randn(2, 16)
    with pagefault.paged(model, tmp_path, budget=3 * layer, prefetch=2) as pm, torch.no_grad():
        assert torch.equal(pm(x), reference(x))
        first = pm.stats.misses
        for _ in range(3):
            assert torch.equal(pm(x), reference(x))
    assert first > 0  # module order was the wrong guess
    assert pm.stats.misses == first  # once learned, every layer was read ahead of its use


def test_source_failing_mid_forward_raises_from_that_forward(llama) -> None:
    """Slots (``mmap=False``): a mapped file truncated under its reader is SIGBUS for any
    mmap-based loader; a read into slots turns it into an error."""
    reference, path = llama
    model = _empty(transformers.LlamaForCausalLM, reference.config)
    minimum_ish = int(_weight_bytes(reference) * 0.5)
    with pagefault.paged(model, path, budget=minimum_ish, mmap=False) as pm, torch.no_grad():
        pm(IDS)
        for shard in path.glob("*.safetensors"):
            shard.write_bytes(shard.read_bytes()[:100])  # truncated under the open reader
        with pytest.raises(pagefault.SourceError):
            for _ in range(3):  # slots still holding layers may serve one forward
                pm(IDS)


def test_mapping_a_file_that_shrank_is_an_error_not_sigbus(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"x" * (1 << 20))
    with LocalFileSource(path) as source:
        mapping = source.map_private()
        os.truncate(path, 4096)
        with pytest.raises(pagefault.SourceError, match="shrank"):
            source.populate(mapping, 8192, 65536)
        mapping.close()


def test_mmap_true_needs_local_files_without_conversion(llama) -> None:
    reference, path = llama
    model = _empty(transformers.LlamaForCausalLM, reference.config)
    with pytest.raises(pagefault.SinkError, match="dtype conversion"):
        pagefault.paged(model, path, budget=None, mmap=True, dtype="bfloat16")


def test_forward_after_close_raises(llama) -> None:
    reference, path = llama
    model = _empty(transformers.LlamaForCausalLM, reference.config)
    pm = pagefault.paged(model, path, budget=None)
    with torch.no_grad():
        pm(IDS)
        pm.close()
        with pytest.raises(pagefault.SinkError, match="closed"):
            model(IDS)
    assert model.model.layers[0].mlp.up_proj.weight.is_meta  # the memory went back


def test_mismatches_raise_before_any_forward(llama) -> None:
    reference, path = llama
    other = transformers.LlamaForCausalLM(tiny_llama_config(transformers, num_hidden_layers=7))
    with pytest.raises(pagefault.LoadIntoError, match=r"missing 9: model\.layers\.6"):
        pagefault.paged(_empty(type(other), other.config), path, budget=None)
    wider = tiny_llama_config(transformers, num_hidden_layers=6, intermediate_size=96)
    with pytest.raises(pagefault.LoadIntoError, match="shape"):
        pagefault.paged(_empty(type(other), wider), path, budget=None)
    with pytest.raises(pagefault.ConfigError, match="budget='lots'"):
        pagefault.paged(_empty(type(other), reference.config), path, budget="lots")


def test_a_model_without_repeated_layers_is_refused(tmp_path: Path) -> None:
    save_file(nn.Linear(4, 4).state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(pagefault.ConfigError, match="ModuleList"):
        pagefault.paged(nn.Linear(4, 4), tmp_path, budget=None)


def test_serves_while_loading_from_a_slow_origin(llama) -> None:
    reference, path = llama
    model = _empty(transformers.LlamaForCausalLM, reference.config)
    with HTTPOrigin(path, bandwidth=400_000) as origin, torch.no_grad():
        pm = pagefault.paged(model, f"{origin.url}/", budget=None, cache=False)
        assert pm.loading  # returned before the weights arrived
        assert torch.equal(pm(IDS).logits, reference(IDS).logits)
        assert not pm.loading  # the first forward needed every layer
        assert torch.equal(pm(IDS).logits, reference(IDS).logits)  # hooks drop themselves here
        assert not model._forward_pre_hooks and not model.model.layers[3]._forward_pre_hooks
        pm.close()


def test_close_while_loading_returns_promptly_and_forward_refuses(llama) -> None:
    reference, path = llama
    model = _empty(transformers.LlamaForCausalLM, reference.config)
    with HTTPOrigin(path, bandwidth=50_000) as origin:  # the whole model takes ~20 s
        pm = pagefault.paged(model, f"{origin.url}/", budget=None, cache=False)
        assert pm.loading
        started = time.monotonic()
        pm.close()
        took = time.monotonic() - started
        assert took < 10, took  # reads stopped, not waited out
        with pytest.raises(pagefault.SinkError, match="closed"), torch.no_grad():
            model(IDS)


def test_pages_a_remote_model_through_the_node_cache(llama, tmp_path: Path) -> None:
    reference, path = llama
    node = pagefault.NodeCache(
        pagefault.CacheConfig(
            disk_dir=tmp_path / "disk", ram_dir=tmp_path / "ram", piece_size=256 << 10
        )
    )
    budget = int(_weight_bytes(reference) * 0.5)
    with HTTPOrigin(path) as origin, torch.no_grad():
        for _ in range(2):  # the second time every piece comes from the cache
            model = _empty(transformers.LlamaForCausalLM, reference.config)
            with pagefault.paged(model, f"{origin.url}/", budget=budget, cache=node) as pm:
                assert torch.equal(pm(IDS).logits, reference(IDS).logits)
                assert torch.equal(pm(IDS).logits, reference(IDS).logits)
                assert pm.stats.pages != "file-mapping"  # cache mappings are not dropped
        served = origin.bytes_sent
    assert served < 1.2 * _weight_bytes(reference)  # the origin served each byte about once


def test_residency_evicts_what_is_needed_furthest_ahead() -> None:
    slots = Residency(groups=5, slots=3)
    assert [slots.place(g, required=False) for g in range(3)] == [(0, None), (1, None), (2, None)]
    assert slots.place(3, required=False) is None  # every held group is needed sooner
    slots.running = 1
    assert slots.upcoming(1, 2) == [2, 3]
    assert slots.place(3, required=False) == (0, 0)  # group 0 just ran: needed last
    slots.running = 3
    assert slots.place(4, required=False) == (2, 2)  # 2 ran just before 3 (running): needed last
    assert slots.upcoming(4, 9) == [0, 1, 2, 3]  # wraps into the next forward


def test_auto_prefetch_times_the_modelled_depth_against_none(llama) -> None:
    reference, path = llama
    model = _empty(transformers.LlamaForCausalLM, reference.config)
    with pagefault.paged(model, path, budget=int(_weight_bytes(reference) * 0.5)) as pm:
        with torch.no_grad():
            for _ in range(6):
                assert torch.equal(pm(IDS).logits, reference(IDS).logits)
        stats = pm.stats
    assert set(stats.prefetch_trial_s) == {0, 1}  # 3 slots: the model says read 1 ahead
    assert stats.prefetch_depth == min(stats.prefetch_trial_s, key=stats.prefetch_trial_s.get)
    assert stats.misses >= 2 * stats.groups - 4  # the depth-0 forwards brought layers in late


def test_depth_trial_keeps_the_faster_depth() -> None:
    trial = DepthTrial(3, rounds=2)
    for depth, seconds in [(3, 1.0), (0, 0.5), (3, 1.2), (0, 0.6)]:
        assert trial.chosen() is None and trial.next_depth() == depth
        trial.record(depth, seconds)
    assert trial.next_depth() is None and trial.chosen() == 0
    assert DepthTrial(0).next_depth() is None  # one slot: nothing to try
    assert modelled_depth(read_s=0.03, compute_s=0.01, room=5) == 3
    assert modelled_depth(read_s=0.001, compute_s=0.01, room=5) == 1
    assert modelled_depth(read_s=0.3, compute_s=0.01, room=2) == 2


def test_residency_never_evicts_the_running_group() -> None:
    slots = Residency(groups=3, slots=1)
    slots.place(0, required=True)
    slots.running = 0
    assert slots.place(1, required=True) is None
    slots.running = 1
    assert slots.place(1, required=True) == (0, 0)
    with pytest.raises(ValueError, match="permutation"):
        slots.set_order([0, 0, 1])


def test_computed_buffers_follow_the_weights_to_their_device() -> None:
    """Rotary tables are real buffers outside the checkpoint: on CUDA they must move too
    (shown here with ``meta`` as the other device, which every machine has)."""
    model = _empty(transformers.LlamaForCausalLM, _llama())
    assert not model.model.rotary_emb.inv_freq.is_meta
    _move_computed_buffers(model, torch.device("meta"))
    assert model.model.rotary_emb.inv_freq.is_meta


@pytest.mark.cuda
def test_cuda_paging_is_exact(llama) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    reference, path = llama
    model = _empty(transformers.LlamaForCausalLM, reference.config)
    budget = int(_weight_bytes(reference) * 0.5)
    with pagefault.paged(model, path, budget=budget, device="cuda") as pm, torch.no_grad():
        got = pm(IDS.cuda()).logits.cpu()
        got = pm(IDS.cuda()).logits.cpu()
    torch.testing.assert_close(got, reference(IDS).logits, rtol=1e-4, atol=1e-4)
