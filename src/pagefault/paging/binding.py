"""Point a group's parameters at the memory its fetch filled, or back at ``meta``."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from pagefault.api.parameters import ModuleTensor, assign
from pagefault.pipeline import Target

from .groups import PageGroup

__all__ = ["bind", "own_memory", "owners", "unbind"]


def bind(
    tensors: dict[str, ModuleTensor], group: PageGroup, fetched: Mapping[str, torch.Tensor]
) -> None:
    """Make each of the group's tensors (and their tied names) the fetched ones."""
    for t in group.tensors:
        assign(tensors, list(t.aliases), fetched[t.name])


def unbind(tensors: dict[str, ModuleTensor], group: PageGroup) -> None:
    """Point the group's tensors at ``meta``, so memory refilled by another group is
    never read in its place: a stray use fails loudly instead."""
    for t in group.tensors:
        assign(tensors, list(t.aliases), torch.empty(t.shape, dtype=t.dtype, device="meta"))


def own_memory(group: PageGroup) -> dict[str, Target] | None:
    """Targets for memory of the group's own: None lets the load choose (a view of the
    file's mapping, or an arena); the dtypes when some tensor is converted."""
    if all(t.dtype == t.source_dtype for t in group.tensors):
        return None
    return {t.name: t.dtype for t in group.tensors}


def owners(tensors: dict[str, ModuleTensor], group: PageGroup) -> list[nn.Module]:
    """The modules holding the group's tensors under any of their names."""
    found: dict[int, nn.Module] = {}
    for t in group.tensors:
        for alias in t.aliases:
            owner = tensors[alias].owner
            found[id(owner)] = owner
    return list(found.values())
