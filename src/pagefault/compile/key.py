"""What compiled code depends on: the key its artifacts are stored under.

Kernels built for one torch, Triton, Python or device do not run (or run wrongly) on
another, so each of those is part of the key and a mismatch is a plain miss: artifacts
for another stack are never loaded.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
from dataclasses import asdict, dataclass

import torch

from pagefault.errors import ConfigError

__all__ = ["CompileKey", "compile_key"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class CompileKey:
    """The stack a set of compiled artifacts was built for."""

    name: str
    torch: str
    triton: str
    python: str
    device: str  # "cpu:AVX512", "cuda:9.0:NVIDIA H100 80GB HBM3"

    @property
    def digest(self) -> str:
        """A short stable id of the whole key: the directory and store name of its bundle."""
        text = json.dumps(asdict(self), sort_keys=True)
        return f"{self.name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def compile_key(name: str, device: str | torch.device | None = None) -> CompileKey:
    """The key for ``name`` on this process's stack (``device``: the one compiled for;
    CUDA when available, else the CPU)."""
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"compile cache name {name!r}: use letters, digits, '.', '_' or '-' (at most 128)"
        )
    chosen = torch.device(device) if device is not None else _default_device()
    return CompileKey(
        name=name,
        torch=torch.__version__,
        triton=_triton_version(),
        python=f"{sys.version_info.major}.{sys.version_info.minor}",
        device=_device_id(chosen),
    )


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _device_id(device: torch.device) -> str:
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"cuda:{major}.{minor}:{torch.cuda.get_device_name(device)}"
    return f"{device.type}:{torch.backends.cpu.get_cpu_capability()}:{platform.machine()}"


def _triton_version() -> str:
    try:
        import triton  # noqa: PLC0415 - optional: GPU stacks only
    except ImportError:
        return ""
    return str(triton.__version__)
