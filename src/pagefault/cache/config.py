"""Where the node cache lives and how big it may grow: defaults, config file, environment.

Precedence, lowest first: built-in defaults, the ``[cache]`` table of the config file
(``$PAGEFAULT_CONFIG``, else ``$XDG_CONFIG_HOME/pagefault/config.toml``, else
``~/.config/pagefault/config.toml``), then ``PAGEFAULT_CACHE*`` environment variables.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from pagefault.errors import CacheError
from pagefault.manifest import DEFAULT_PIECE_SIZE
from pagefault.manifest.pieces import MIN_PIECE_SIZE
from pagefault.system import sizes
from pagefault.system.switches import OFF_WORDS, parse_switch

__all__ = [
    "CacheConfig",
    "config_path",
    "load_config",
    "nearest_existing",
    "parse_size",
    "read_table",
]


@dataclass(frozen=True)
class CacheConfig:
    """The cache's tiers. A tier whose directory is None (or capacity 0) is off.

    ``disk_dir`` also holds the catalog (which URI is which pieces, pins), so it is
    needed even with only a RAM tier; ``ram_dir`` holds the cross-process locks.
    """

    enabled: bool = True
    disk_dir: Path = Path("~/.cache/pagefault")
    ram_dir: Path | None = Path("/dev/shm/pagefault")
    disk_capacity: int | None = None  # None: a quarter of the filesystem
    ram_capacity: int | None = None  # None: a quarter of the tmpfs
    offline: bool = False  # trust the catalog without asking the origin (HEAD) first
    piece_size: int = DEFAULT_PIECE_SIZE  # for origins that publish no piece manifest

    def resolved(self) -> CacheConfig:
        """Paths expanded and default capacities computed from the filesystems."""
        disk = self.disk_dir.expanduser()
        ram = self.ram_dir.expanduser() if self.ram_dir else None
        return replace(
            self,
            disk_dir=disk,
            ram_dir=ram,
            disk_capacity=_capacity(self.disk_capacity, disk),
            ram_capacity=_capacity(self.ram_capacity, ram) if ram else 0,
        )


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """The config file consulted (it need not exist)."""
    env = os.environ if env is None else env
    if explicit := env.get("PAGEFAULT_CONFIG"):
        return Path(explicit)
    base = env.get("XDG_CONFIG_HOME") or "~/.config"
    return Path(base).expanduser() / "pagefault" / "config.toml"


def load_config(env: Mapping[str, str] | None = None) -> CacheConfig:
    """Defaults, overridden by the config file, overridden by the environment."""
    env = os.environ if env is None else env
    settings: dict[str, Any] = {}
    path = config_path(env)
    if path.is_file():
        settings.update(_file_settings(path))
    settings.update(_env_settings(env))
    return _build(settings, where=str(path))


def parse_size(text: str | int, *, field: str) -> int:
    """A capacity from the config file or environment, as a byte count."""
    try:
        return sizes.parse_size(text)
    except ValueError as exc:
        raise CacheError(f"{field}: {exc}") from exc


def _file_settings(path: Path) -> dict[str, Any]:
    return read_table(path, "cache")


def read_table(path: Path, name: str) -> dict[str, Any]:
    """One table of the config file (empty when the file has none)."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CacheError(f"{path}: cannot read config: {exc}") from exc
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise CacheError(f"{path}: [{name}] must be a table")
    return table


def _env_settings(env: Mapping[str, str]) -> dict[str, Any]:
    names = {
        "PAGEFAULT_CACHE": "enabled",
        "PAGEFAULT_CACHE_DIR": "disk_dir",
        "PAGEFAULT_CACHE_RAM_DIR": "ram_dir",
        "PAGEFAULT_CACHE_DISK_CAPACITY": "disk_capacity",
        "PAGEFAULT_CACHE_RAM_CAPACITY": "ram_capacity",
        "PAGEFAULT_OFFLINE": "offline",
        "PAGEFAULT_CACHE_PIECE_SIZE": "piece_size",
    }
    return {key: env[name] for name, key in names.items() if name in env}


def _build(settings: Mapping[str, Any], *, where: str) -> CacheConfig:
    known = {f.name for f in fields(CacheConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise CacheError(f"{where}: unknown cache setting(s) {unknown}; known: {sorted(known)}")
    config = CacheConfig()
    for key, value in settings.items():
        config = replace(config, **{key: _convert(key, value)})
    return config


def _convert(key: str, value: Any) -> Any:
    text = str(value).strip().lower()
    if key in ("enabled", "offline"):
        try:
            return parse_switch(value)
        except ValueError as exc:
            raise CacheError(f"{key}: {exc}") from None
    if key in ("ram_dir", "disk_dir"):
        if key == "ram_dir" and (value is False or text in OFF_WORDS):
            return None
        if not isinstance(value, str) or not value.strip():
            raise CacheError(f"{key}: {value!r} is not a directory path")
        return Path(value)
    if key == "piece_size":
        return _piece_size(parse_size(value, field=key))
    return None if str(value).strip().lower() in ("", "auto") else parse_size(value, field=key)


def _capacity(configured: int | None, directory: Path) -> int:
    if configured is not None:
        return configured
    return shutil.disk_usage(nearest_existing(directory)).total // 4


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (a cache directory is made lazily)."""
    return next((p for p in (path, *path.parents) if p.exists()), path)


def _piece_size(size: int) -> int:
    if size < MIN_PIECE_SIZE or size & (size - 1):
        raise CacheError(f"piece_size: {size} must be a power of two of at least {MIN_PIECE_SIZE}")
    return size
