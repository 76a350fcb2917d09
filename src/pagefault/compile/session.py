"""``compile_cache(name)``: torch.compile's artifacts, cached and shared like weights.

Inside the block, inductor works in a directory of its own per key (name, torch,
Triton, Python, device) under the node cache. On entry, if that directory is empty,
the newest bundle for the key is unpacked into it from the node cache, else from the
shared store (Redis, an object store), checked against its digest first; then
``torch.compiler.load_cache_artifacts`` is given the portable artifacts the bundle
carries, and on the CPU the bundle's record of inductor's ISA probe spares the process
that probe (:mod:`pagefault.compile.vec_isa`). On a clean exit ``save_cache_artifacts``
runs, the directory is packed, and a bundle that differs from the one loaded is
published to the node cache and the store.

Why the whole directory: on CPU, ``save/load_cache_artifacts`` alone gave no gain at
the default mode (the backend's C++ kernels are rebuilt), while shipping inductor's
cache directory made a warm start 5x faster (docs/benchmarks.md). A corrupt or
unreachable copy is skipped with a warning and compilation proceeds from scratch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from pagefault.cache import CacheChoice, node_cache
from pagefault.compile.directory import CachedDirectory
from pagefault.compile.key import CompileKey, compile_key
from pagefault.compile.stores import BundleStore, DirectoryStore, compile_root, open_store
from pagefault.compile.vec_isa import vec_isa_settled

__all__ = ["CompileCache", "CompileStats", "compile_cache"]

_MEGA = "pagefault-cache-artifacts.bin"  # torch.compiler.save_cache_artifacts' bytes
_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


@dataclass
class CompileStats:
    """Where the artifacts came from and what it cost."""

    key: str = ""
    hit: str | None = None  # "local" (already here), "node", the store URI; None: a miss
    bundle_bytes: int = 0  # of the bundle loaded
    load_s: float = 0.0  # finding, checking and unpacking it
    published: list[str] = field(default_factory=list)  # where a new bundle went on exit
    published_bytes: int = 0
    skipped: list[str] = field(default_factory=list)  # copies refused, with why
    # inductor's CPU ISA probe: "recorded" (skipped: the bundle vouched), "probed",
    # "inductor" (left to it), None (not compiling for the CPU)
    vec_isa: str | None = None
    vec_isa_s: float = 0.0  # the probe, when run up front (inductor would have run it)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CompileCache:
    """The context manager :func:`compile_cache` returns; ``stats`` after the block."""

    def __init__(self, key: CompileKey, *, store: BundleStore | None, root: Path | None) -> None:
        """``root``: the node cache's compile area; None keeps nothing on the node (inductor
        works in a scratch directory removed on exit, bundles come from ``store`` only)."""
        self.key = key
        base = root if root is not None else Path(tempfile.mkdtemp(prefix="pagefault-compile-"))
        self._scratch = None if root is not None else base
        self.directory = base / key.digest / "inductor"
        stores: list[BundleStore] = [DirectoryStore(root / "bundles")] if root is not None else []
        if store is not None:
            stores.append(store)
        self._cached = CachedDirectory(
            self.directory, key.digest, stores, volatile=frozenset({_MEGA})
        )
        self.stats = CompileStats(key=key.digest, skipped=self._cached.skipped)
        self._previous: str | None = None
        self._settings = contextlib.ExitStack()  # inductor settings undone on exit

    def __enter__(self) -> CompileCache:
        started = time.perf_counter()
        self._cached.restore()
        self.stats.hit, self.stats.bundle_bytes = self._cached.hit, self._cached.bundle_bytes
        self._previous = os.environ.get(_CACHE_ENV)
        os.environ[_CACHE_ENV] = str(self.directory)
        _clear_inductor_memory()
        mega = self.directory / _MEGA
        if mega.exists():
            torch.compiler.load_cache_artifacts(mega.read_bytes())
        self.stats.load_s = time.perf_counter() - started
        if self.key.device.startswith("cpu:"):
            started = time.perf_counter()
            self.stats.vec_isa = self._settings.enter_context(vec_isa_settled(self.directory))
            self.stats.vec_isa_s = time.perf_counter() - started
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                saved = torch.compiler.save_cache_artifacts()
                if saved is not None:
                    (self.directory / _MEGA).write_bytes(saved[0])
                self._cached.publish()
                self.stats.published = self._cached.published
                self.stats.published_bytes = self._cached.published_bytes
        finally:
            self._settings.close()
            if self._scratch is not None:
                shutil.rmtree(self._scratch, ignore_errors=True)
            if self._previous is None:
                os.environ.pop(_CACHE_ENV, None)
            else:
                os.environ[_CACHE_ENV] = self._previous
            _clear_inductor_memory()


def compile_cache(
    name: str,
    *,
    store: str | None = None,
    cache: CacheChoice = None,
    device: str | torch.device | None = None,
) -> CompileCache:
    """Cache ``torch.compile``'s artifacts under ``name`` on this node and in ``store``.

    ``store`` (or ``PAGEFAULT_COMPILE_STORE``): ``redis://``, ``file://``, ``s3://``,
    ``gs://`` or ``az://``, shared by every node. ``cache``: the node cache, as for
    ``pagefault.load`` (None: the configured one unless ``PAGEFAULT_CACHE=off``; False:
    none, so only the store is used; a ``NodeCache``: that one). ``device``: what the
    code is compiled for (default: CUDA when available, else the CPU), part of the key
    with the torch, Triton and Python versions.

    >>> with pagefault.compile_cache("llama-8b") as cached:  # doctest: +SKIP
    ...     model = torch.compile(model)
    ...     model(inputs)
    >>> cached.stats.hit  # doctest: +SKIP
    'redis://cache:6379/0'
    """
    return CompileCache(compile_key(name, device), store=open_store(store), root=_root(cache))


def _root(cache: CacheChoice) -> Path | None:
    """The compile area of the node cache ``cache`` names, or None for none."""
    node = node_cache(cache)
    return compile_root(node.config) if node is not None else None


def _clear_inductor_memory() -> None:
    """Forget in-memory caches so inductor looks in the directory now configured."""
    from torch._inductor.utils import clear_caches  # noqa: PLC0415 - inductor is heavy

    clear_caches()
