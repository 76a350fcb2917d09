"""Deterministic synthetic checkpoints with Llama-like shapes, for tests and benchmarks.

The same ``(size, shards, seed)`` always gives the same bytes. Values are bf16 in
(-2, 2): random bits with the top exponent bit cleared, so there are no NaNs or
infinities and equality checks are meaningful.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pagefault.errors import ConfigError
from pagefault.formats import DType, TensorSpec, write_safetensors
from pagefault.system.files import write_atomic

__all__ = ["SyntheticConfig", "llama_like_specs", "write_synthetic_checkpoint"]

_BF16_MASK = np.uint16(0xBFFF)


@dataclass(frozen=True)
class SyntheticConfig:
    """Target size in bytes, number of shards (1 = a single model.safetensors), seed."""

    size: int
    shards: int = 1
    seed: int = 0


def llama_like_specs(size: int) -> list[TensorSpec]:
    """Embedding, decoder layers (attention, MLP, norms), norm and lm_head: ≈ ``size`` bytes."""
    hidden = next(h for limit, h in _HIDDEN_BY_SIZE if size < limit)
    vocab = 32000 if size >= 1 << 30 else 4096
    inter = (hidden * 8 // 3 + 255) // 256 * 256
    layer_bytes = 2 * (4 * hidden * hidden + 3 * hidden * inter + 2 * hidden)
    layers = max(1, (size - 4 * vocab * hidden) // layer_bytes)
    specs = [TensorSpec("model.embed_tokens.weight", DType.BF16, (vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        specs += [
            TensorSpec(p + "input_layernorm.weight", DType.BF16, (hidden,)),
            *(
                TensorSpec(p + f"self_attn.{n}_proj.weight", DType.BF16, (hidden, hidden))
                for n in "qkvo"
            ),
            TensorSpec(p + "post_attention_layernorm.weight", DType.BF16, (hidden,)),
            TensorSpec(p + "mlp.gate_proj.weight", DType.BF16, (inter, hidden)),
            TensorSpec(p + "mlp.up_proj.weight", DType.BF16, (inter, hidden)),
            TensorSpec(p + "mlp.down_proj.weight", DType.BF16, (hidden, inter)),
        ]
    specs += [
        TensorSpec("model.norm.weight", DType.BF16, (hidden,)),
        TensorSpec("lm_head.weight", DType.BF16, (vocab, hidden)),
    ]
    return specs


_HIDDEN_BY_SIZE = (
    (64 << 20, 256),
    (512 << 20, 512),
    (2 << 30, 1024),
    (16 << 30, 2048),
    (1 << 62, 4096),
)


def write_synthetic_checkpoint(directory: str | os.PathLike[str], config: SyntheticConfig) -> Path:
    """Write the checkpoint into ``directory``; return the path to pass to ``load``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    specs = llama_like_specs(config.size)
    groups = _split(specs, config.shards)
    if len(groups) == 1:
        target = out / "model.safetensors"
        write_safetensors(target, specs, _tensor_bytes(specs, config.seed, 0))
        return target
    weight_map: dict[str, str] = {}
    first = 0
    for number, group in enumerate(groups, start=1):
        name = f"model-{number:05d}-of-{len(groups):05d}.safetensors"
        write_safetensors(out / name, group, _tensor_bytes(group, config.seed, first))
        weight_map.update({spec.name: name for spec in group})
        first += len(group)
    index = {"metadata": {"total_size": sum(_nbytes(s) for s in specs)}, "weight_map": weight_map}
    target = out / "model.safetensors.index.json"
    write_atomic(target, [json.dumps(index, indent=2).encode()])
    return target


def _split(specs: Sequence[TensorSpec], shards: int) -> list[list[TensorSpec]]:
    """Consecutive groups of about equal bytes (as HF's ``max_shard_size`` does)."""
    if shards < 1:
        raise ConfigError(f"shards must be at least 1, got {shards}")
    per_shard = sum(_nbytes(s) for s in specs) / shards
    groups: list[list[TensorSpec]] = [[]]
    filled = 0
    for spec in specs:
        if filled >= per_shard * len(groups) and len(groups) < shards:
            groups.append([])
        groups[-1].append(spec)
        filled += _nbytes(spec)
    return groups


def _nbytes(spec: TensorSpec) -> int:
    return int(np.prod(spec.shape, dtype=np.int64)) * spec.dtype.bits // 8


def _tensor_bytes(specs: Sequence[TensorSpec], seed: int, first: int) -> Iterator[bytes]:
    for offset, spec in enumerate(specs):
        rng = np.random.default_rng([seed, first + offset])
        numel = _nbytes(spec) // 2
        yield (rng.integers(0, 1 << 16, size=numel, dtype=np.uint16) & _BF16_MASK).tobytes()
