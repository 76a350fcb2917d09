"""vLLM: ``--load-format pagefault`` streams weights through pagefault.

Registered from the ``vllm.general_plugins`` entry point (``register``), so every vLLM
process (API server and workers) has it. The loader hands ``pagefault.stream(source)``
to the model's own ``load_weights``: vLLM's weight loaders (fused QKV, sharding, quant)
see the same ``(name, tensor)`` pairs as with its default loader, but each arrives as
soon as its bytes do, from the cheapest place: local files, a remote URI, the node
cache, a swarm agent (``PAGEFAULT_AGENT``).

``--model-loader-extra-config`` (JSON) options: ``uri`` (where the weights are; default:
the model path, or ``hf://MODEL@REVISION`` for a Hub id), ``cache`` (bool), ``verify``
(bool), ``threads`` (int), ``compile_store`` (default ``PAGEFAULT_COMPILE_STORE``).

vLLM's own compile cache (``VLLM_CACHE_ROOT/torch_compile_cache``) travels like
``compile_cache``'s bundles: before the weights load, the newest bundle for this model
and stack (node cache, then the store) is merged into it; what vLLM compiles afterwards
(during its warm-up, after the loader returns) is published when the process exits
cleanly and, for servers that never do, ``PUBLISH_AFTER_S`` after the load.
"""

from __future__ import annotations

import atexit
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pagefault.compile.directory import CachedDirectory
from pagefault.compile.key import compile_key
from pagefault.compile.stores import BundleStore, DirectoryStore, compile_root, open_store
from pagefault.errors import ConfigError, LoadIntoError

__all__ = ["LOAD_FORMAT", "PUBLISH_AFTER_S", "register", "vllm_compile_cache", "weights_source"]

LOAD_FORMAT = "pagefault"
PUBLISH_AFTER_S = 600.0
_OPTIONS = frozenset({"uri", "cache", "verify", "threads", "compile_store"})


def weights_source(model: str, revision: str | None, extra: Mapping[str, Any]) -> str:
    """Where a vLLM model's weights are: ``extra["uri"]``, the local path, or the Hub."""
    unknown = set(extra) - _OPTIONS
    if unknown:
        raise ConfigError(
            f"--model-loader-extra-config: unknown {sorted(unknown)} (pagefault takes "
            f"{sorted(_OPTIONS)})"
        )
    if extra.get("uri"):
        return str(extra["uri"])
    if os.path.exists(model) or "://" in model:
        return model
    return f"hf://{model}@{revision}" if revision else f"hf://{model}"


def vllm_compile_cache(
    cache_root: str | os.PathLike[str], model: str, vllm_version: str, store: str | None
) -> CachedDirectory:
    """vLLM's ``torch_compile_cache`` under ``cache_root``, kept in step with the stores
    under a key naming the model, vLLM and the stack (merged in: the directory is shared
    by every model this node serves)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "--", f"vllm{vllm_version}-{Path(model).name}")[:120]
    key = compile_key(name)
    stores: list[BundleStore] = [DirectoryStore(compile_root() / "bundles")]
    shared = open_store(store)
    if shared is not None:
        stores.append(shared)
    cached = CachedDirectory(Path(cache_root) / "torch_compile_cache", key.digest, stores)
    cached.restore(merge=True)
    return cached


def register() -> None:
    """Entry point (``vllm.general_plugins``): register the ``pagefault`` load format."""
    import vllm  # noqa: PLC0415 - only inside vLLM's processes
    import vllm.envs  # noqa: PLC0415
    from vllm.model_executor.model_loader import register_model_loader  # noqa: PLC0415
    from vllm.model_executor.model_loader.base_loader import BaseModelLoader  # noqa: PLC0415

    import pagefault  # noqa: PLC0415 - the package imports this module lazily

    class PagefaultModelLoader(BaseModelLoader):  # type: ignore[misc]
        """vLLM's model, pagefault's bytes."""

        def _options(self) -> dict[str, Any]:
            extra = self.load_config.model_loader_extra_config
            return dict(extra) if isinstance(extra, Mapping) else {}

        def _source(self, model_config: Any) -> str:
            return weights_source(model_config.model, model_config.revision, self._options())

        def download_model(self, model_config: Any) -> None:
            pagefault.inspect(self._source(model_config))  # headers only: checks the source

        def load_weights(self, model: Any, model_config: Any) -> None:
            options = self._options()
            self.compile_cache = vllm_compile_cache(
                vllm.envs.VLLM_CACHE_ROOT,
                model_config.model,
                vllm.__version__,
                options.get("compile_store"),
            )
            atexit.register(self.compile_cache.publish)
            timer = threading.Timer(PUBLISH_AFTER_S, self.compile_cache.publish)
            timer.daemon = True
            timer.start()
            with pagefault.stream(
                self._source(model_config),
                cache=options.get("cache"),
                verify=options.get("verify"),
                threads=options.get("threads"),
            ) as tensors:
                loaded = model.load_weights(tensors)
            _check_loaded(model, loaded)

    register_model_loader(LOAD_FORMAT)(PagefaultModelLoader)


def _check_loaded(model: Any, loaded: Iterable[str] | None) -> None:
    """As vLLM's default loader does: every parameter must have been given a value."""
    if loaded is None:
        return
    missing = {name for name, _ in model.named_parameters()} - set(loaded)
    if missing:
        raise LoadIntoError(
            f"the checkpoint left {len(missing)} parameters unset: {sorted(missing)[:10]}"
        )
