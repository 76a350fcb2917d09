"""``load``, ``stream`` and ``inspect``: the public entry points for reading a model."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from pagefault.api.chain import CacheChoice, open_model
from pagefault.errors import ConfigError, SinkError
from pagefault.manifest import Manifest
from pagefault.pieces.engine import check_threads
from pagefault.pipeline import LoadOptions, TensorStream, open_stream

__all__ = [
    "FLOAT_TARGETS",
    "CacheChoice",
    "inspect",
    "load",
    "open_model",
    "parse_device",
    "parse_dtype",
    "stream",
]

PathLike = str | os.PathLike[str]


def stream(
    source: PathLike,
    device: str | torch.device = "cpu",
    *,
    mmap: bool | None = None,
    dtype: torch.dtype | str | None = None,
    threads: int | None = None,
    memory_limit: int | None = None,
    request_size: int | None = None,
    verify: bool | None = None,
    cache: CacheChoice = None,
    on_progress: Callable[[int], None] | None = None,
) -> TensorStream:
    """Yield ``(name, tensor)`` in file order, each as soon as its bytes are in place.

    Reading starts at once and runs ahead on background threads; the returned
    iterator's ``.stats`` describes the load once it is exhausted. See ``load`` for
    the arguments. ``on_progress(nbytes)`` is called from worker threads.

    >>> for name, tensor in pagefault.stream("model.safetensors"):  # doctest: +SKIP
    ...     model.get_parameter(name).copy_(tensor)
    """
    check_threads(threads)
    options = LoadOptions(
        device=parse_device(device),
        mmap=mmap,
        dtype=parse_dtype(dtype),
        threads=threads,
        memory_limit=memory_limit,
        request_size=request_size,
        verify=verify,
    )
    return open_stream(open_model(source, cache), options, on_progress=on_progress)


def load(
    source: PathLike,
    device: str | torch.device = "cpu",
    *,
    mmap: bool | None = None,
    dtype: torch.dtype | str | None = None,
    threads: int | None = None,
    memory_limit: int | None = None,
    request_size: int | None = None,
    verify: bool | None = None,
    cache: CacheChoice = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Load every tensor of a safetensors file, sharded index, or directory.

    Args:
        source: a ``.safetensors`` file, a ``*.safetensors.index.json``, or a directory
            holding one of them; local, or a remote URI (``s3://``, ``gs://``, ``az://``,
            ``http(s)://``) naming a file, an index or a prefix. Remote bytes stream
            straight into the tensors with parallel ranged GETs.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        mmap: CPU only. ``True``: tensors view a private copy-on-write mapping of the
            file (zero-copy, made resident before returning). ``False``: tensors live in
            one private huge-page arena. ``None`` (default): mapped when every file is
            local and no ``dtype`` conversion is asked for, else private.
        dtype: convert floating-point tensors (F16/BF16/F32/F64) to this dtype while
            loading, through a bounded staging buffer (no second full copy). A torch
            dtype or its name (``"float16"``, ``"bf16"``, ``"fp32"`` ...); only
            floating-point targets (a ``ConfigError`` otherwise).
        threads: I/O threads; default one per usable CPU (at least 2, at most 16), or
            16 concurrent connections for a remote source.
        memory_limit: bytes of staging memory for CUDA loads and conversions
            (default 256 MiB); never the model size.
        request_size: bytes per read request (default 64 MiB; 16 MiB remote).
        verify: check every piece against the published ``pagefault.manifest.json``
            before its tensors are exposed. ``None`` (default): when the model is
            remote and publishes one. ``True``: require it. ``False``: never.
        cache: remote models only. ``None`` (default): through the node cache unless
            it is configured off (``PAGEFAULT_CACHE=off``); ``False``: bypass it;
            ``True``: use it even if configured off; or a ``NodeCache`` to use. The
            cache checks every piece itself (SHA-256 from the origin, XXH3 at rest).

    Tensors keep their arena or mapping alive; it is freed with the last of them.

    >>> tensors = pagefault.load("model.safetensors")  # doctest: +SKIP
    """
    with stream(
        source,
        device,
        mmap=mmap,
        dtype=dtype,
        threads=threads,
        memory_limit=memory_limit,
        request_size=request_size,
        verify=verify,
        cache=cache,
        on_progress=on_progress,
    ) as tensors:
        return dict(tensors)


def inspect(source: PathLike, *, cache: CacheChoice = None) -> Manifest:
    """Read and validate only the headers: files, tensor names, dtypes, shapes, byte ranges."""
    with open_model(source, cache, agent=False) as model:  # headers only: no swarm job for them
        return model.manifest


FLOAT_TARGETS = {
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float64": torch.float64, "fp64": torch.float64, "double": torch.float64,
}  # fmt: skip


def parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A conversion target: a floating-point torch dtype, given as one or by name.

    Converting bf16 weights to int8 or bool would silently zero them, so only the
    floating-point dtypes a cast preserves are accepted.
    """
    if dtype is None:
        return None
    found = (
        FLOAT_TARGETS.get(dtype.lower().removeprefix("torch.")) if isinstance(dtype, str) else dtype
    )
    if found not in FLOAT_TARGETS.values():
        raise ConfigError(
            f"dtype={dtype!r}: convert to a floating-point dtype "
            "(float16, bfloat16, float32, float64); other tensors keep their own dtype"
        )
    return found


def parse_device(device: str | torch.device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise SinkError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from exc
