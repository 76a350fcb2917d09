"""``load_into``: fill an existing ``nn.Module`` in place, without a second copy.

Materialized parameters are read straight into their own storage (or copied through
the bounded staging ring when dtype/device differ). Parameters on the ``meta`` device
get fresh storage in one arena, with the module's dtype, and are swapped in. Tied
parameters (one tensor under several names) are loaded once and stay tied.

Names match as ``from_pretrained`` matches them: a checkpoint tensor that names one of
the module's non-persistent buffers (an old ``position_ids``, say) is not loaded, and a
Transformers model's ``_keys_to_ignore_on_load_unexpected`` / ``_keys_to_ignore_on_load_missing``
patterns (``re.search``, gathered from every submodule) excuse the names they match.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from pagefault.errors import LoadIntoError
from pagefault.manifest import Manifest
from pagefault.pipeline import LoadOptions, Target, open_stream
from pagefault.tensors.dtypes import torch_shape

from .loading import CacheChoice, open_model, parse_device

__all__ = ["IncompatibleKeys", "load_into"]

_SHOWN = 10
_log = logging.getLogger(__name__)


class IncompatibleKeys(NamedTuple):
    """Names the module has that the checkpoint lacks, and the reverse."""

    missing_keys: list[str]
    unexpected_keys: list[str]


@dataclass(frozen=True)
class _Slot:
    owner: nn.Module
    attr: str
    tensor: torch.Tensor
    is_parameter: bool


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
    slots = dict(_named_slots(module))
    with open_model(source, cache) as model:
        groups = _alias_groups(slots)
        chosen, keys = _match(model.manifest, slots, groups)
        keys = _excuse(module, keys)
        if strict and (keys.missing_keys or keys.unexpected_keys):
            raise LoadIntoError(_mismatch_message(keys, source))
        targets = {name: _target(name, slots[name], model.manifest) for name in chosen}
        options = LoadOptions(
            device=parse_device(device),
            threads=threads,
            memory_limit=memory_limit,
            verify=verify,
        )
        with open_stream(model, options, targets=targets) as tensors:
            for name, tensor in tensors:
                if slots[name].tensor.is_meta:
                    _assign(slots, groups[name], tensor)
    if strict:
        _check_no_meta(module)
    return keys


def _named_slots(module: nn.Module) -> Iterator[tuple[str, _Slot]]:
    for prefix, owner in module.named_modules(remove_duplicate=False):
        dot = f"{prefix}." if prefix else ""
        for attr, param in owner._parameters.items():
            if param is not None:
                yield dot + attr, _Slot(owner, attr, param, True)
        for attr, buf in owner._buffers.items():
            if buf is not None and attr not in owner._non_persistent_buffers_set:
                yield dot + attr, _Slot(owner, attr, buf, False)


def _alias_groups(slots: dict[str, _Slot]) -> dict[str, list[str]]:
    """Map each name to every name sharing its tensor object (tied weights)."""
    by_id: dict[int, list[str]] = {}
    for name, slot in slots.items():
        by_id.setdefault(id(slot.tensor), []).append(name)
    return {name: by_id[id(slot.tensor)] for name, slot in slots.items()}


def _match(
    manifest: Manifest, slots: dict[str, _Slot], groups: dict[str, list[str]]
) -> tuple[list[str], IncompatibleKeys]:
    present = {t.name for t in manifest.tensors}
    chosen: list[str] = []
    covered: set[str] = set()
    for entry in manifest.tensors:
        if entry.name in slots and entry.name not in covered:
            chosen.append(entry.name)
            covered.update(groups[entry.name])
    missing = [name for name in slots if name not in covered]
    unexpected = [name for name in present if name not in slots]
    return chosen, IncompatibleKeys(missing, unexpected)


def _target(name: str, slot: _Slot, manifest: Manifest) -> Target:
    entry = manifest.tensor(name)
    if tuple(slot.tensor.shape) != torch_shape(entry.dtype, entry.shape, tensor=name):
        raise LoadIntoError(
            f"tensor {name!r}: checkpoint shape {list(entry.shape)} does not match "
            f"the module's {list(slot.tensor.shape)}"
        )
    return slot.tensor.dtype if slot.tensor.is_meta else slot.tensor.detach()


def _assign(slots: dict[str, _Slot], names: list[str], tensor: torch.Tensor) -> None:
    first = slots[names[0]]
    value: torch.Tensor = (
        nn.Parameter(tensor, requires_grad=first.tensor.requires_grad)
        if first.is_parameter
        else tensor
    )
    for name in names:
        slot = slots[name]
        if slot.is_parameter:
            slot.owner._parameters[slot.attr] = value  # type: ignore[assignment]
        else:
            slot.owner._buffers[slot.attr] = value


def _excuse(module: nn.Module, keys: IncompatibleKeys) -> IncompatibleKeys:
    """Drop the names the module says it does not load, as ``from_pretrained`` does."""
    computed = set(_non_persistent_buffers(module))
    unexpected_rule = _patterns(module, "_keys_to_ignore_on_load_unexpected")
    missing_rule = _patterns(module, "_keys_to_ignore_on_load_missing")
    excused: list[str] = []
    unexpected = []
    for name in keys.unexpected_keys:
        if name in computed:
            excused.append(f"{name} (a non-persistent buffer: the module computes it)")
        elif unexpected_rule and unexpected_rule.search(name):
            excused.append(f"{name} (_keys_to_ignore_on_load_unexpected)")
        else:
            unexpected.append(name)
    missing = []
    for name in keys.missing_keys:
        if missing_rule and missing_rule.search(name):
            excused.append(f"{name} (_keys_to_ignore_on_load_missing)")
        else:
            missing.append(name)
    if excused:
        _log.info("load_into skipped %d names the module does not load: %s", len(excused), excused)
    return IncompatibleKeys(missing, unexpected)


def _non_persistent_buffers(module: nn.Module) -> Iterator[str]:
    for prefix, owner in module.named_modules(remove_duplicate=False):
        dot = f"{prefix}." if prefix else ""
        yield from (dot + attr for attr in owner._non_persistent_buffers_set)


def _patterns(module: nn.Module, attribute: str) -> re.Pattern[str] | None:
    """One regex of every pattern ``attribute`` lists on ``module`` or any submodule."""
    found: set[str] = set()
    for owner in module.modules():
        value: Iterable[str] | None = getattr(owner, attribute, None)
        found.update(value or ())
    return re.compile("|".join(f"(?:{p})" for p in sorted(found))) if found else None


def _mismatch_message(keys: IncompatibleKeys, source: object) -> str:
    parts = [f"module and checkpoint {source} do not match (pass strict=False to load anyway)"]
    kinds = (
        ("missing", keys.missing_keys, "the module has them, the checkpoint does not"),
        ("unexpected", keys.unexpected_keys, "in the checkpoint, not in the module"),
    )
    for kind, names, why in kinds:
        if names:
            more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
            parts.append(f"{kind} {len(names)}: {', '.join(names[:_SHOWN])}{more} ({why})")
    return "; ".join(parts)


def _check_no_meta(module: nn.Module) -> None:
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise LoadIntoError(
            f"{len(left)} tensors are still on the meta device and not in the checkpoint: "
            f"{', '.join(left[:_SHOWN])}. Build the module with parameters on meta but "
            "buffers real (e.g. accelerate.init_empty_weights()), or pass strict=False."
        )
