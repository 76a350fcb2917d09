"""Split a module's checkpoint tensors into pageable groups and an always-resident rest.

The default groups are the children of the model's largest repeated ``ModuleList``
(one decoder layer each): inference runs them in a fixed order and each holds an equal
share of the weights, so they page well. Everything else (embeddings, final norm, head)
and any tensor tied across groups stays resident, so tied weights stay tied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from pagefault.api.parameters import ModuleTensor, alias_groups, computed_buffers
from pagefault.errors import ConfigError
from pagefault.manifest import Manifest
from pagefault.pipeline.destinations import packed, target_dtype
from pagefault.tensors.dtypes import to_torch_dtype, torch_shape

__all__ = ["GroupTensor", "Layout", "PageGroup", "layout_groups", "repeated_layers"]


@dataclass(frozen=True)
class GroupTensor:
    """One checkpoint tensor, its tied names, and where it sits inside its group's slot."""

    name: str
    aliases: tuple[str, ...]
    dtype: torch.dtype
    source_dtype: torch.dtype  # the checkpoint's
    shape: tuple[int, ...]
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass(frozen=True)
class PageGroup:
    """One unit of paging: a submodule and the tensors it pages in together."""

    name: str
    module: nn.Module
    tensors: tuple[GroupTensor, ...]
    nbytes: int  # aligned: the slot room it needs


@dataclass(frozen=True)
class Layout:
    """The resident part and the pageable groups, in module (expected execution) order."""

    resident: PageGroup
    groups: tuple[PageGroup, ...]
    other_bytes: int  # buffers not in the checkpoint (rotary tables): resident too

    @property
    def slot_bytes(self) -> int:
        return max((g.nbytes for g in self.groups), default=0)

    @property
    def converts(self) -> bool:
        """Whether some tensor's dtype differs from the checkpoint's (no zero-copy then)."""
        groups = (self.resident, *self.groups)
        return any(t.dtype != t.source_dtype for g in groups for t in g.tensors)

    @property
    def resident_bytes(self) -> int:
        return self.resident.nbytes + self.other_bytes

    def minimum_budget(self) -> tuple[int, str]:
        """The smallest budget that runs, and the group that sets it."""
        largest = max(self.groups, key=lambda g: g.nbytes, default=None)
        name = largest.name if largest else "(no pageable groups)"
        return self.resident_bytes + self.slot_bytes, name


def repeated_layers(module: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ``ModuleList`` of two or more children holding the most parameter bytes."""
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, child in module.named_modules():
        if isinstance(child, nn.ModuleList) and len(child) >= 2:
            size = sum(p.numel() * p.element_size() for p in child.parameters())
            if best is None or size > best[0]:
                best = (size, name, child)
    if best is None:
        raise ConfigError(
            f"{type(module).__name__} has no ModuleList of two or more layers to page; "
            "paged() pages the children of the model's largest repeated ModuleList"
        )
    return best[1], best[2]


def layout_groups(
    module: nn.Module,
    tensors: dict[str, ModuleTensor],
    *,
    chosen: list[str],
    manifest: Manifest,
    dtype: torch.dtype | None,
) -> Layout:
    """Assign each chosen checkpoint tensor to a layer's group or to the resident part.

    A tensor's dtype is ``dtype`` for floating-point tensors when given, else the
    module's own (as ``load_into`` converts).
    """
    aliases = alias_groups(tensors)
    prefix, layers = repeated_layers(module)
    names = [f"{prefix}.{i}" if prefix else str(i) for i in range(len(layers))]
    members: list[list[str]] = [[] for _ in layers]
    resident: list[str] = []
    for name in chosen:
        owners = {_layer_of(alias, names) for alias in aliases[name]}
        only = owners.pop() if len(owners) == 1 else None
        (resident if only is None else members[only]).append(name)
    build = _GroupBuilder(tensors, aliases, manifest, dtype)
    groups = tuple(build(names[i], layers[i], members[i]) for i in range(len(layers)) if members[i])
    loaded = {alias for name in chosen for alias in aliases[name]}
    other = sum(
        t.tensor.numel() * t.tensor.element_size()
        for n, t in tensors.items()
        if n not in loaded and not t.tensor.is_meta
    )
    other += _non_persistent_bytes(module)
    return Layout(build("(resident)", module, resident), groups, other)


def _layer_of(name: str, layer_names: list[str]) -> int | None:
    for i, layer in enumerate(layer_names):
        if name.startswith(layer + "."):
            return i
    return None


def _non_persistent_bytes(module: nn.Module) -> int:
    """Bytes of the buffers the module computes, each counted once however it is reached."""
    real = {id(b): b for *_, b in computed_buffers(module) if b is not None and not b.is_meta}
    return sum(b.numel() * b.element_size() for b in real.values())


@dataclass(frozen=True)
class _GroupBuilder:
    tensors: dict[str, ModuleTensor]
    aliases: dict[str, list[str]]
    manifest: Manifest
    dtype: torch.dtype | None

    def __call__(self, name: str, module: nn.Module, members: list[str]) -> PageGroup:
        unplaced = [self._tensor(member) for member in members]
        offsets, size = packed(t.nbytes for t in unplaced)
        laid = tuple(replace(t, offset=o) for t, o in zip(unplaced, offsets, strict=True))
        return PageGroup(name, module, laid, size)

    def _tensor(self, member: str) -> GroupTensor:
        entry = self.manifest.tensor(member)
        wanted = self.tensors[member].tensor.dtype  # the module's own, as load_into keeps it
        if self.dtype is not None and target_dtype(entry, self.dtype) == self.dtype:
            wanted = self.dtype
        return GroupTensor(
            member,
            tuple(self.aliases[member]),
            wanted,
            to_torch_dtype(entry.dtype, tensor=member),
            torch_shape(entry.dtype, entry.shape, tensor=member),
            offset=0,
        )
