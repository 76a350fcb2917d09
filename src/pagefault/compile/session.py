"""``compile_cache(name)``: torch.compile's artifacts, cached and shared like weights.

Inside the block, inductor works in a directory of its own per key (name, torch,
Triton, Python, device) under the node cache. On entry, if that directory is empty,
the newest bundle for the key is unpacked into it from the node cache, else from the
shared store (Redis, an object store), checked against its digest first; then
``torch.compiler.load_cache_artifacts`` is given the portable artifacts the bundle
carries. On a clean exit ``save_cache_artifacts`` runs, the directory is packed, and a
bundle that differs from the one loaded is published to the node cache and the store.

Why the whole directory: on CPU, ``save/load_cache_artifacts`` alone gave no gain at
the default mode (the backend's C++ kernels are rebuilt), while shipping inductor's
cache directory made a warm start 5x faster (docs/benchmarks.md). A corrupt or
unreachable copy is skipped with a warning and compilation proceeds from scratch.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from pagefault.cache.config import load_config
from pagefault.compile.bundle import digest_of, pack, unpack
from pagefault.compile.key import CompileKey, compile_key
from pagefault.compile.stores import BundleStore, DirectoryStore, open_store
from pagefault.errors import PagefaultError

__all__ = ["CompileCache", "CompileStats", "compile_cache", "compile_root"]

_MEGA = "pagefault-cache-artifacts.bin"  # torch.compiler.save_cache_artifacts' bytes
_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
_log = logging.getLogger(__name__)


@dataclass
class CompileStats:
    """Where the artifacts came from and what it cost."""

    key: str = ""
    hit: str | None = None  # "local" (already here), "node", the store URI; None: a miss
    bundle_bytes: int = 0  # of the bundle loaded
    load_s: float = 0.0  # finding, checking and unpacking it
    published: list[str] | None = None  # where a new bundle went on exit
    published_bytes: int = 0
    skipped: list[str] | None = None  # copies refused (corrupt, unreachable), with why

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compile_root() -> Path:
    """The node cache's compile area (inductor directories and bundles)."""
    return load_config().disk_dir.expanduser() / "compile"


class CompileCache:
    """The context manager :func:`compile_cache` returns; ``stats`` after the block."""

    def __init__(self, key: CompileKey, *, store: BundleStore | None, root: Path) -> None:
        self.key = key
        self.stats = CompileStats(key=key.digest, skipped=[])
        self.directory = root / key.digest / "inductor"
        self._stores: list[BundleStore] = [DirectoryStore(root / "bundles")]
        if store is not None:
            self._stores.append(store)
        self._loaded = ""  # what the directory held on entry (``_kernels_digest``)
        self._previous: str | None = None

    def __enter__(self) -> CompileCache:
        started = time.perf_counter()
        self.directory.mkdir(parents=True, exist_ok=True)
        if any(self.directory.iterdir()):
            self.stats.hit = "local"
        else:
            self._fetch()
        self._loaded = self._kernels_digest()
        self._previous = os.environ.get(_CACHE_ENV)
        os.environ[_CACHE_ENV] = str(self.directory)
        _clear_inductor_memory()
        mega = self.directory / _MEGA
        if mega.exists():
            torch.compiler.load_cache_artifacts(mega.read_bytes())
        self.stats.load_s = time.perf_counter() - started
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self._publish()
        finally:
            if self._previous is None:
                os.environ.pop(_CACHE_ENV, None)
            else:
                os.environ[_CACHE_ENV] = self._previous
            _clear_inductor_memory()

    def _fetch(self) -> None:
        """The newest bundle from the first store that has a good one."""
        for store in self._stores:
            try:
                digest = store.latest(self.key.digest)
                data = store.get(self.key.digest, digest) if digest else None
                if digest is None or data is None:
                    continue
                unpack(data, digest, self.directory, what=f"{store.name} {self.key.digest}")
            except PagefaultError as exc:
                _log.warning("compile cache: skipping %s: %s", store.name, exc)
                assert self.stats.skipped is not None
                self.stats.skipped.append(f"{store.name}: {exc}")
                continue
            self.stats.hit, self.stats.bundle_bytes = store.name, len(data)
            return

    def _publish(self) -> None:
        saved = torch.compiler.save_cache_artifacts()
        if saved is not None:
            (self.directory / _MEGA).write_bytes(saved[0])
        if self._kernels_digest() == self._loaded:
            return  # nothing compiled that was not already there
        data = pack(self.directory)
        digest = digest_of(data)
        self.stats.published, self.stats.published_bytes = [], len(data)
        for store in self._stores:
            try:
                store.put(self.key.digest, digest, data)
            except PagefaultError as exc:
                _log.warning("compile cache: cannot publish to %s: %s", store.name, exc)
                continue
            self.stats.published.append(store.name)

    def _kernels_digest(self) -> str:
        """What the directory holds, leaving out the portable artifacts file: its bytes
        change from one save to the next even when nothing new was compiled."""
        return digest_of(pack(self.directory, leave_out=frozenset({_MEGA})))


def compile_cache(
    name: str, *, store: str | None = None, device: str | torch.device | None = None
) -> CompileCache:
    """Cache ``torch.compile``'s artifacts under ``name`` on this node and in ``store``.

    ``store`` (or ``PAGEFAULT_COMPILE_STORE``): ``redis://``, ``file://``, ``s3://``,
    ``gs://`` or ``az://``, shared by every node. ``device``: what the code is compiled
    for (default: CUDA when available, else the CPU), part of the key with the torch,
    Triton and Python versions.

    >>> with pagefault.compile_cache("llama-8b") as cached:  # doctest: +SKIP
    ...     model = torch.compile(model)
    ...     model(inputs)
    >>> cached.stats.hit  # doctest: +SKIP
    'redis://cache:6379/0'
    """
    return CompileCache(compile_key(name, device), store=open_store(store), root=compile_root())


def _clear_inductor_memory() -> None:
    """Forget in-memory caches so inductor looks in the directory now configured."""
    from torch._inductor.utils import clear_caches  # noqa: PLC0415 - inductor is heavy

    clear_caches()
