"""``PagedModel``: forward hooks that page a module's layers through a bounded set of slots.

Before a group (layer) runs, its pre-hook makes it resident, waiting only when its
fetch has not landed, and queues the next groups of the cycle into slots it may take
(``Residency``: evict whatever is needed furthest ahead, which is the group that just
ran). The first forward records the real execution order. With no budget every group
has its own memory, the first forward runs while later groups still arrive, and once all
have landed the hooks remove themselves: no per-forward cost afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from pagefault.api.parameters import ModuleTensor
from pagefault.errors import SinkError
from pagefault.pipeline import Target

from .binding import bind, own_memory, owners, unbind
from .depth import DepthTrial, modelled_depth
from .groups import Layout, PageGroup
from .pager import Fetch, Pager
from .residency import Residency
from .slots import SlotPool
from .stats import PagedStats

__all__ = ["PagedModel"]

RESIDENT = -1  # the key of the resident part's fetch


class PagedModel:
    """A module whose layers are paged in on demand; use it, or the module itself, as before.

    ``model(...)``, ``model.generate(...)`` and any other attribute reach the module.
    One forward at a time. ``close()`` (or leaving ``with``) stops reading and frees the
    weights; a forward after that raises ``SinkError``.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        layout: Layout,
        tensors: dict[str, ModuleTensor],
        pager: Pager,
        pool: SlotPool | None,
        stats: PagedStats,
        prefetch: int | None,
        device: torch.device,
    ) -> None:
        self.module = module
        self.stats = stats
        self._layout = layout
        self._tensors = tensors
        self._pager = pager
        self._pool = pool
        self._prefetch = prefetch
        self._device = device
        self._residency = Residency(groups=len(layout.groups), slots=stats.slots)
        self._fetches: dict[int, Fetch] = {}
        self._bound: set[int] = set()
        self._slot_events: dict[int, torch.cuda.Event] = {}
        self._handles: list[RemovableHandle] = []
        self._lock = threading.RLock()
        self._observed: list[int] | None = None
        self._trial: DepthTrial | None = None
        self._forward_started = 0.0
        self._stall = 0.0
        self._group_started = 0.0
        self._group_reads = 0  # group fetches bound so far (read_s is their sum)
        self._closed = False

    @property
    def loading(self) -> bool:
        """Whether reads are still under way (with no budget: the model is not all in yet)."""
        return not self._closed and any(not f.done.is_set() for f in self._fetches.values())

    # -- set-up (called once by ``paged``) ---------------------------------------------

    def start(self) -> PagedModel:
        """Queue the resident part and the first groups; hook the module.

        With no budget everything goes in one load, in execution order, and this returns
        at once; otherwise the resident part is read first (a wrong source or a full disk
        shows here, not mid-forward) and the slots fill behind it.
        """
        layout = self._layout
        resident = self._new_fetch(RESIDENT, layout.resident, own_memory(layout.resident))
        if self._serving:
            groups = [self._schedule(i, submit=False) for i in range(len(layout.groups))]
            self._pager.submit(resident, *[g for g in groups if g is not None])
        else:
            self._pager.submit(resident)
            self._wait(RESIDENT)
            self._bind(RESIDENT)
            for index in range(len(layout.groups)):
                if self._schedule(index) is None:
                    break
        self._hook()
        return self

    @property
    def _serving(self) -> bool:
        """No budget: serve while loading, every group in memory of its own."""
        return self.stats.budget is None

    def _hook(self) -> None:
        add = self._handles.append
        add(self.module.register_forward_pre_hook(self._before_forward))
        add(self.module.register_forward_hook(self._after_forward))
        for index, group in enumerate(self._layout.groups):
            add(group.module.register_forward_pre_hook(self._hook_for(self._before_group, index)))
            add(group.module.register_forward_hook(self._hook_for(self._after_group, index)))
        if self._serving:
            for owner in owners(self._tensors, self._layout.resident):
                add(owner.register_forward_pre_hook(self._before_resident))

    # -- hooks -------------------------------------------------------------------------

    def _before_forward(self, module: nn.Module, args: Any) -> None:
        self._check_open()
        if self._serving and self._everything_landed():
            self._settle()
            return
        self._stall = 0.0
        self._forward_started = time.perf_counter()
        if self.stats.forwards == 0:
            self._observed = []
        if self._trial is not None and (depth := self._trial.next_depth()) is not None:
            self.stats.prefetch_depth = depth

    def _after_forward(self, module: nn.Module, args: Any, output: Any) -> None:
        stats = self.stats
        stats.forwards += 1
        stats.stall_s.append(self._stall)
        with self._lock:
            if self._observed is not None:
                seen = list(dict.fromkeys(self._observed))
                self._observed = None
                if len(seen) == len(self._layout.groups):
                    self._residency.set_order(seen)
            self._tune(time.perf_counter() - self._forward_started)
            if self._residency.running is not None:  # the next forward, in the order now known
                self._read_ahead(self._residency.running)

    def _before_resident(self, module: nn.Module, args: Any) -> None:
        self._check_open()
        if RESIDENT not in self._bound:
            self._stall += self._wait(RESIDENT)
            self._bind(RESIDENT)

    def _before_group(self, index: int) -> None:
        self._check_open()
        with self._lock:
            if self._observed is not None:
                self._observed.append(index)
            self._residency.running = index
            fetch = self._fetches.get(index)
            if fetch is None:
                self.stats.misses += 1
                fetch = self._schedule(index, required=True)
            self._read_ahead(index)
        self._stall += self._wait(index)
        if index not in self._bound:
            self._bind(index)
        self._group_started = time.perf_counter()

    def _after_group(self, index: int) -> None:
        self.stats.compute_s += time.perf_counter() - self._group_started
        self.stats.group_runs += 1
        slot = self._residency.slot_of(index)
        if self._device.type == "cuda" and slot is not None:
            event = torch.cuda.Event()  # type: ignore[no-untyped-call]
            event.record()  # the slot may be refilled only after this group's kernels ran
            self._slot_events[slot] = event

    @staticmethod
    def _hook_for(method: Callable[[int], None], index: int) -> Callable[..., None]:
        def hook(module: nn.Module, *rest: Any) -> None:
            method(index)

        return hook

    # -- paging ------------------------------------------------------------------------

    def _read_ahead(self, index: int) -> None:
        """Queue the groups that run after ``index`` into the slots the policy frees."""
        for upcoming in self._residency.upcoming(index, self.stats.prefetch_depth):
            if upcoming not in self._fetches and self._schedule(upcoming) is None:
                break

    def _schedule(self, index: int, *, required: bool = False, submit: bool = True) -> Fetch | None:
        """Give group ``index`` a slot (evicting if the policy says so) and queue its read."""
        placed = self._residency.place(index, required=required)
        if placed is None:
            return None
        slot, victim = placed
        if victim is not None:
            self._evict(victim)
        group = self._layout.groups[index]
        targets = own_memory(group) if self._pool is None else self._pool.views(slot, group)
        fetch = self._new_fetch(index, group, targets, after=self._slot_events.pop(slot, None))
        if submit:
            self._pager.submit(fetch)
        return fetch

    def _new_fetch(
        self,
        index: int,
        group: PageGroup,
        targets: Mapping[str, Target] | None,
        after: torch.cuda.Event | None = None,
    ) -> Fetch:
        self.stats.fetches += index != RESIDENT
        names = tuple(t.name for t in group.tensors)
        fetch = self._fetches[index] = Fetch(index, names, targets, after=after)
        return fetch

    def _evict(self, index: int) -> None:
        self.stats.evictions += 1
        fetch = self._fetches.pop(index, None)
        if index in self._bound:
            self._bound.discard(index)
            unbind(self._tensors, self._layout.groups[index])
        if fetch is not None:
            self._pager.release(fetch)

    def _wait(self, index: int) -> float:
        fetch = self._fetches[index]
        try:
            waited = fetch.wait()
        except BaseException:
            with self._lock:  # the next forward asks again instead of reusing the failure
                if self._fetches.get(index) is fetch:
                    del self._fetches[index]
                    self._residency.forget(index)
            raise
        return waited

    def _bind(self, index: int) -> None:
        fetch = self._fetches[index]
        self.stats.bytes_streamed += fetch.nbytes
        if index != RESIDENT:  # read_s is the groups' reads: what the read-ahead must hide
            self.stats.read_s += fetch.seconds
            self._group_reads += 1
        group = self._layout.resident if index == RESIDENT else self._layout.groups[index]
        bind(self._tensors, group, fetch.tensors)
        self._bound.add(index)

    def _tune(self, seconds: float) -> None:
        """``prefetch=None``: after the first forward, try the modelled depth against none."""
        stats = self.stats
        if self._prefetch is not None or self._serving:
            return
        if self._trial is None:
            stats.prefetch_depth = modelled_depth(
                read_s=stats.read_s / max(1, self._group_reads),
                compute_s=stats.compute_s / max(1, stats.group_runs),
                room=stats.slots - 1,
            )
            self._trial = DepthTrial(stats.prefetch_depth)
            return
        if self._trial.next_depth() is not None:
            self._trial.record(stats.prefetch_depth, seconds)
            chosen = self._trial.chosen()
            if chosen is not None:
                stats.prefetch_depth = chosen
                stats.prefetch_trial_s = dict(self._trial.seconds)

    def _everything_landed(self) -> bool:
        return len(self._fetches) == len(self._layout.groups) + 1 and all(
            f.done.is_set() and f.error is None for f in self._fetches.values()
        )

    def _settle(self) -> None:
        """Every group has landed (no budget): bind them and drop the hooks for good."""
        for index in self._fetches:
            if index not in self._bound:
                self._bind(index)
        self._remove_hooks()

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading, free the weights (they go back to ``meta``). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._pager.close()
        self._remove_hooks()
        self._handles.append(self.module.register_forward_pre_hook(self._refuse))
        for group in (self._layout.resident, *self._layout.groups):
            unbind(self._tensors, group)
        self._fetches.clear()
        self._bound.clear()
        self._pool = None

    def _refuse(self, module: nn.Module, args: Any) -> None:
        self._check_open()

    def _check_open(self) -> None:
        if self._closed:
            raise SinkError(
                f"{type(self.module).__name__} was paged and then closed; its weights are "
                "gone. Call pagefault.paged() again to use it."
            )

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "module":  # not set yet (unpickling, a failed __init__): no recursion
            raise AttributeError(name)
        return getattr(self.module, name)

    def __enter__(self) -> PagedModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.stats.slots} slots"
        return f"PagedModel({type(self.module).__name__}, {state})"
