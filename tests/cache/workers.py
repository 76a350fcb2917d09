"""Functions run in child processes by the multi-process cache tests (importable by name)."""

from __future__ import annotations

import hashlib
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pagefault
from pagefault.cache import NodeCache

from .conftest import cache_config


def tensors_digest(tensors: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for name, tensor in tensors.items():
        digest.update(name.encode())
        digest.update(tensor.contiguous().view(-1).view(__import__("torch").uint8).numpy())
    return digest.hexdigest()


def load_and_digest(url: str, root: str, barrier: Barrier, results: Any) -> None:
    """Wait for the others, load through the shared cache, report a digest of the tensors."""
    node = NodeCache(cache_config(Path(root)))
    barrier.wait()
    stream = pagefault.stream(url, cache=node)
    digest = tensors_digest(dict(stream))
    results.put((digest, stream.stats.bytes_by_source))


def load_until_killed(url: str, root: str, started: Any) -> None:
    """Load through the cache again and again; the test SIGKILLs this process somewhere."""
    node = NodeCache(cache_config(Path(root)))
    started.set()
    pagefault.load(url, cache=node)
