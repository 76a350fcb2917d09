"""vLLM: ``--load-format pagefault`` streams weights through pagefault.

Registered from the ``vllm.general_plugins`` entry point (``register``), so every vLLM
process (API server and workers) has it. The loader hands ``pagefault.stream(source)``
to the model's own ``load_weights``: vLLM's weight loaders (fused QKV, sharding, quant)
see the same ``(name, tensor)`` pairs as with its default loader, but each arrives as
soon as its bytes do, from the cheapest place: local files, a remote URI, the node
cache, a swarm agent (``PAGEFAULT_AGENT``).

``--model-loader-extra-config`` (JSON) options: ``uri`` (where the weights are; default:
the model path, or ``hf://MODEL@REVISION`` for a Hub id), ``cache`` (bool), ``verify``
(bool), ``threads`` (int).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from pagefault.errors import ConfigError, LoadIntoError

__all__ = ["LOAD_FORMAT", "register", "weights_source"]

LOAD_FORMAT = "pagefault"
_OPTIONS = frozenset({"uri", "cache", "verify", "threads"})


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


def register() -> None:
    """Entry point (``vllm.general_plugins``): register the ``pagefault`` load format."""
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
