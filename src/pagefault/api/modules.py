"""``load_into``: fill an existing ``nn.Module`` in place, without a second copy.

Materialized parameters are read straight into their own storage (or copied through
the bounded staging ring when dtype/device differ). Parameters on the ``meta`` device
get fresh storage in one arena, with the module's dtype, and are swapped in. Tied
parameters (one tensor under several names) are loaded once and stay tied. Names match
as ``from_pretrained`` matches them (see :mod:`pagefault.api.parameters`).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from pagefault.pipeline import LoadOptions, Target, open_stream

from .loading import CacheChoice, open_model, parse_device
from .parameters import (
    IncompatibleKeys,
    alias_groups,
    assign,
    check_no_meta,
    checked_shape,
    match_checkpoint,
    module_tensors,
)

__all__ = ["IncompatibleKeys", "load_into"]


def load_into(
    module: nn.Module,
    source: str | os.PathLike[str],
    *,
    strict: bool = True,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    memory_limit: int | None = None,
    verify: bool | None = None,
    cache: CacheChoice = None,
) -> IncompatibleKeys:
    """Load a checkpoint into ``module``'s parameters and persistent buffers.

    ``device`` is where parameters that are on ``meta`` are materialized; others stay
    where they are. With ``strict`` every name must match both ways and no tensor may
    remain on ``meta`` afterwards. Shapes must always match. ``source``, ``verify``
    and ``cache`` are as for :func:`pagefault.load` (remote URIs included).

    >>> with torch.device("meta"):  # doctest: +SKIP
    ...     model = MyModel()
    >>> pagefault.load_into(model, "model.safetensors")  # doctest: +SKIP
    """
    tensors = module_tensors(module)
    with open_model(source, cache) as model:
        groups = alias_groups(tensors)
        chosen, keys = match_checkpoint(
            module, model.manifest, tensors, strict=strict, source=source
        )
        targets: dict[str, Target] = {}
        for name in chosen:
            existing = tensors[name].tensor
            checked_shape(name, existing, model.manifest)
            targets[name] = existing.dtype if existing.is_meta else existing.detach()
        options = LoadOptions(
            device=parse_device(device),
            threads=threads,
            memory_limit=memory_limit,
            verify=verify,
        )
        with open_stream(model, options, targets=targets) as stream:
            for name, tensor in stream:
                if tensors[name].tensor.is_meta:
                    assign(tensors, groups[name], tensor)
    if strict:
        check_no_meta(module)
    return keys
