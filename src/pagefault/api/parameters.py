"""A module's checkpoint tensors: find them, match them to a manifest, swap storage in.

Shared by ``load_into`` (fill a module once) and ``paged`` (swap layers in and out).
Names match as ``from_pretrained`` matches them: a checkpoint tensor that names one of
the module's non-persistent buffers (an old ``position_ids``, say) is not loaded, and a
Transformers model's ``_keys_to_ignore_on_load_unexpected`` / ``_keys_to_ignore_on_load_missing``
patterns (``re.search``, gathered from every submodule) excuse the names they match.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from pagefault.errors import LoadIntoError
from pagefault.manifest import Manifest
from pagefault.tensors.dtypes import torch_shape

__all__ = [
    "IncompatibleKeys",
    "ModuleTensor",
    "alias_groups",
    "assign",
    "check_no_meta",
    "checked_shape",
    "computed_buffers",
    "match_checkpoint",
    "module_tensors",
]

_SHOWN = 10
_log = logging.getLogger(__name__)


class IncompatibleKeys(NamedTuple):
    """Names the module has that the checkpoint lacks, and the reverse."""

    missing_keys: list[str]
    unexpected_keys: list[str]


@dataclass(frozen=True)
class ModuleTensor:
    """Where one parameter or persistent buffer lives: ``owner.<attr>``."""

    owner: nn.Module
    attr: str
    tensor: torch.Tensor
    is_parameter: bool


def module_tensors(module: nn.Module) -> dict[str, ModuleTensor]:
    """Every parameter and persistent buffer under its full name (tied ones under each)."""
    found: dict[str, ModuleTensor] = {}
    for prefix, owner in module.named_modules(remove_duplicate=False):
        dot = f"{prefix}." if prefix else ""
        for attr, param in owner._parameters.items():
            if param is not None:
                found[dot + attr] = ModuleTensor(owner, attr, param, True)
        for attr, buf in owner._buffers.items():
            if buf is not None and attr not in owner._non_persistent_buffers_set:
                found[dot + attr] = ModuleTensor(owner, attr, buf, False)
    return found


def alias_groups(tensors: dict[str, ModuleTensor]) -> dict[str, list[str]]:
    """Map each name to every name sharing its tensor object (tied weights)."""
    by_id: dict[int, list[str]] = {}
    for name, found in tensors.items():
        by_id.setdefault(id(found.tensor), []).append(name)
    return {name: by_id[id(found.tensor)] for name, found in tensors.items()}


def match_checkpoint(
    module: nn.Module,
    manifest: Manifest,
    tensors: dict[str, ModuleTensor],
    *,
    strict: bool,
    source: object,
) -> tuple[list[str], IncompatibleKeys]:
    """The checkpoint names to load (one per tied group, in file order) and what is left
    over; with ``strict``, a ``LoadIntoError`` listing any mismatch."""
    groups = alias_groups(tensors)
    present = {t.name for t in manifest.tensors}
    chosen: list[str] = []
    covered: set[str] = set()
    for entry in manifest.tensors:
        if entry.name in tensors and entry.name not in covered:
            chosen.append(entry.name)
            covered.update(groups[entry.name])
    missing = [name for name in tensors if name not in covered]
    unexpected = [name for name in present if name not in tensors]
    keys = _excuse(module, IncompatibleKeys(missing, unexpected))
    if strict and (keys.missing_keys or keys.unexpected_keys):
        raise LoadIntoError(_mismatch_message(keys, source, untied=_untied(module, keys)))
    return chosen, keys


def checked_shape(name: str, tensor: torch.Tensor, manifest: Manifest) -> None:
    """Raise ``LoadIntoError`` unless the checkpoint's ``name`` has ``tensor``'s shape."""
    entry = manifest.tensor(name)
    if tuple(tensor.shape) != torch_shape(entry.dtype, entry.shape, tensor=name):
        raise LoadIntoError(
            f"tensor {name!r}: checkpoint shape {list(entry.shape)} does not match "
            f"the module's {list(tensor.shape)}"
        )


def assign(tensors: dict[str, ModuleTensor], names: list[str], value: torch.Tensor) -> None:
    """Make ``value`` the storage of every name in ``names`` (one tied group)."""
    first = tensors[names[0]]
    held: torch.Tensor = (
        nn.Parameter(value, requires_grad=first.tensor.requires_grad)
        if first.is_parameter
        else value
    )
    for name in names:
        found = tensors[name]
        if found.is_parameter:
            found.owner._parameters[found.attr] = held  # type: ignore[assignment]
        else:
            found.owner._buffers[found.attr] = held


def check_no_meta(module: nn.Module) -> None:
    """Raise ``LoadIntoError`` naming the tensors still on ``meta``."""
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise LoadIntoError(
            f"{len(left)} tensors are still on the meta device and not in the checkpoint: "
            f"{', '.join(left[:_SHOWN])}. Build the module with parameters on meta but "
            "buffers real (e.g. accelerate.init_empty_weights()), or pass strict=False."
        )


def _excuse(module: nn.Module, keys: IncompatibleKeys) -> IncompatibleKeys:
    """Drop the names the module says it does not load, as ``from_pretrained`` does."""
    computed = {name for name, *_ in computed_buffers(module)}
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
        _log.info("skipped %d names the module does not load: %s", len(excused), excused)
    return IncompatibleKeys(missing, unexpected)


def computed_buffers(
    module: nn.Module,
) -> Iterator[tuple[str, nn.Module, str, torch.Tensor | None]]:
    """The buffers a module computes instead of loading (non-persistent: rotary tables,
    ``position_ids``): full name, owner, attribute, and the buffer (None if unset)."""
    for prefix, owner in module.named_modules(remove_duplicate=False):
        dot = f"{prefix}." if prefix else ""
        for attr in owner._non_persistent_buffers_set:
            yield dot + attr, owner, attr, owner._buffers.get(attr)


def _patterns(module: nn.Module, attribute: str) -> re.Pattern[str] | None:
    """One regex of every pattern ``attribute`` lists on ``module`` or any submodule."""
    found: set[str] = set()
    for owner in module.modules():
        value: Iterable[str] | None = getattr(owner, attribute, None)
        found.update(value or ())
    return re.compile("|".join(f"(?:{p})" for p in sorted(found))) if found else None


def _untied(module: nn.Module, keys: IncompatibleKeys) -> bool:
    """A Transformers model built on meta whose tied weights were not tied yet."""
    config = getattr(module, "config", None)
    return bool(
        keys.missing_keys
        and hasattr(module, "tie_weights")
        and getattr(config, "tie_word_embeddings", False)
    )


def _mismatch_message(keys: IncompatibleKeys, source: object, *, untied: bool) -> str:
    parts = [f"module and checkpoint {source} do not match (pass strict=False to load anyway)"]
    if untied:
        parts.append("the model ties its embeddings: call model.tie_weights() first")
    kinds = (
        ("missing", keys.missing_keys, "the module has them, the checkpoint does not"),
        ("unexpected", keys.unexpected_keys, "in the checkpoint, not in the module"),
    )
    for kind, names, why in kinds:
        if names:
            more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
            parts.append(f"{kind} {len(names)}: {', '.join(names[:_SHOWN])}{more} ({why})")
    return "; ".join(parts)
