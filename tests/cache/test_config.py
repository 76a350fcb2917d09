"""Cache configuration: defaults < the config file's ``[cache]`` table < PAGEFAULT_* variables.

The autouse ``isolated_cache`` fixture sets PAGEFAULT_CONFIG (to a file that does not
exist), PAGEFAULT_CACHE_DIR and PAGEFAULT_CACHE_RAM_DIR; tests that need the real
defaults pass ``env`` to :func:`load_config` or remove those variables.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import pagefault
from pagefault.cache import CacheConfig, NodeCache, config_path, load_config
from pagefault.cli import app
from pagefault.errors import CacheError
from pagefault.manifest import DEFAULT_PIECE_SIZE
from pagefault.testing import HTTPOrigin

from .conftest import PIECE, cache_config

GiB = 1 << 30


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where PAGEFAULT_CONFIG points (not yet written)."""
    path = tmp_path / "etc" / "pagefault.toml"
    monkeypatch.setenv("PAGEFAULT_CONFIG", str(path))
    return path


def test_defaults() -> None:
    config = load_config(env={})
    assert config == CacheConfig()
    assert config.enabled is True and config.offline is False
    assert config.disk_dir == Path("~/.cache/pagefault")
    assert config.ram_dir == Path("/dev/shm/pagefault")
    assert config.disk_capacity is None and config.ram_capacity is None
    assert config.piece_size == DEFAULT_PIECE_SIZE


def test_resolved_expands_home_and_sizes_capacities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    resolved = CacheConfig(ram_dir=Path("~/shm")).resolved()
    assert resolved.disk_dir == tmp_path / ".cache" / "pagefault"
    assert resolved.ram_dir == tmp_path / "shm"
    assert resolved.disk_capacity is not None and resolved.disk_capacity > 0  # a quarter of /
    assert resolved.ram_capacity == resolved.disk_capacity  # same filesystem here
    off = CacheConfig(ram_dir=None, disk_capacity=5 * GiB).resolved()
    assert off.ram_dir is None and off.ram_capacity == 0 and off.disk_capacity == 5 * GiB


def test_config_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PAGEFAULT_CONFIG", str(tmp_path / "explicit.toml"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_path() == tmp_path / "explicit.toml"
    monkeypatch.delenv("PAGEFAULT_CONFIG")
    assert config_path() == tmp_path / "xdg" / "pagefault" / "config.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert config_path() == tmp_path / "home" / ".config" / "pagefault" / "config.toml"


def test_file_overrides_defaults(config_file: Path, tmp_path: Path) -> None:
    write_config(
        config_file,
        f"""
[other]
ignored = true

[cache]
disk_dir = "{tmp_path / "disk"}"
ram_dir = "{tmp_path / "ram"}"
disk_capacity = "8GiB"
ram_capacity = 500000000
offline = true
piece_size = "1MiB"
""",
    )
    config = load_config(env={"PAGEFAULT_CONFIG": str(config_file)})
    assert config.disk_dir == tmp_path / "disk" and config.ram_dir == tmp_path / "ram"
    assert config.disk_capacity == 8 * GiB and config.ram_capacity == 500_000_000
    assert config.offline is True and config.enabled is True
    assert config.piece_size == 1 << 20


def test_xdg_config_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAGEFAULT_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    write_config(tmp_path / "xdg" / "pagefault" / "config.toml", '[cache]\nenabled = "off"\n')
    assert load_config(env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")}).enabled is False


def test_file_without_cache_table_gives_defaults(config_file: Path) -> None:
    write_config(config_file, "[somebody_else]\ndisk_dir = 3\n")
    assert load_config(env={"PAGEFAULT_CONFIG": str(config_file)}) == CacheConfig()


def test_env_overrides_file(config_file: Path, tmp_path: Path) -> None:
    write_config(
        config_file,
        f"""[cache]
disk_dir = "{tmp_path / "from-file"}"
ram_capacity = "1GiB"
disk_capacity = "2GiB"
offline = true
""",
    )
    env = {
        "PAGEFAULT_CONFIG": str(config_file),
        "PAGEFAULT_CACHE_DIR": str(tmp_path / "from-env"),
        "PAGEFAULT_CACHE_RAM_CAPACITY": "500MB",
        "PAGEFAULT_OFFLINE": "no",
        "PAGEFAULT_CACHE_PIECE_SIZE": "256KiB",
    }
    config = load_config(env=env)
    assert config.disk_dir == tmp_path / "from-env"
    assert config.ram_capacity == 500_000_000
    assert config.disk_capacity == 2 * GiB  # not in the environment: the file's
    assert config.offline is False
    assert config.piece_size == PIECE


def test_process_environment_is_the_default_env(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(config_file, '[cache]\ndisk_capacity = "2GiB"\nram_capacity = "1GiB"\n')
    monkeypatch.setenv("PAGEFAULT_CACHE_DISK_CAPACITY", "8GiB")
    monkeypatch.setenv("PAGEFAULT_CACHE", "0")
    monkeypatch.setenv("PAGEFAULT_OFFLINE", "1")
    config = load_config()
    assert config.disk_capacity == 8 * GiB and config.ram_capacity == GiB
    assert config.enabled is False and config.offline is True
    assert config.disk_dir == tmp_path / "node-cache" / "disk"  # from isolated_cache
    assert NodeCache().config.disk_capacity == 8 * GiB


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8GiB", 8 * GiB),
        ("500MB", 500_000_000),
        ("512KiB", 512 * 1024),
        ("1.5G", 1_500_000_000),
        ("1073741824", GiB),
        (" 2 TiB ", 2 << 40),
        ("0", 0),
        ("auto", None),
        ("", None),
    ],
)
def test_capacity_sizes(text: str, expected: int | None) -> None:
    config = load_config(env={"PAGEFAULT_CACHE_DISK_CAPACITY": text})
    assert config.disk_capacity == expected


@pytest.mark.parametrize("value", ["off", "OFF", "none", "false", "0", ""])
def test_ram_dir_off_disables_the_ram_tier(value: str, tmp_path: Path) -> None:
    config = load_config(env={"PAGEFAULT_CACHE_RAM_DIR": value, "PAGEFAULT_CACHE_DIR": "/x"})
    assert config.ram_dir is None
    cache = NodeCache(cache_config(tmp_path, ram_dir=config.ram_dir))
    assert [t.name for t in cache.tiers] == ["disk"] and cache.ram is None
    assert cache.runtime == tmp_path / "disk"  # locks and leases move to the disk dir


def test_ram_dir_false_in_file_and_zero_ram_capacity_disable_the_ram_tier(
    config_file: Path, tmp_path: Path
) -> None:
    write_config(config_file, "[cache]\nram_dir = false\n")
    assert load_config(env={"PAGEFAULT_CONFIG": str(config_file)}).ram_dir is None
    zero = NodeCache(cache_config(tmp_path, ram_capacity=0))
    assert [t.name for t in zero.tiers] == ["disk"]
    both = NodeCache(cache_config(tmp_path))
    assert [t.name for t in both.tiers] == ["ram", "disk"]


def test_loads_without_a_ram_tier_cache_on_disk(
    origin: HTTPOrigin, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAGEFAULT_CACHE_RAM_DIR", "off")
    monkeypatch.setenv("PAGEFAULT_CACHE_PIECE_SIZE", "256KiB")
    uri = origin.url + "/plain"
    pagefault.load(uri)
    sent = origin.bytes_sent
    warm = pagefault.stream(uri)
    dict(warm)
    assert warm.stats.bytes_by_source["origin"] == 0 and warm.stats.bytes_by_source["ram"] == 0
    assert warm.stats.bytes_by_source["disk"] >= warm.stats.bytes
    assert origin.bytes_sent == sent
    assert not (isolated_cache / "ram").exists()
    assert list((isolated_cache / "disk" / "pieces").glob("*/*"))


def test_cache_off_bypasses_the_cache(
    origin: HTTPOrigin, served: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAGEFAULT_CACHE", "off")
    monkeypatch.setenv("PAGEFAULT_CACHE_PIECE_SIZE", "256KiB")
    uri = origin.url + "/plain"
    size = (served / "plain" / "model.safetensors").stat().st_size
    for _ in range(2):
        sent = origin.bytes_sent
        stream = pagefault.stream(uri)
        dict(stream)
        assert origin.bytes_sent - sent >= size  # every load downloads the model again
        by_source = stream.stats.bytes_by_source
        assert by_source["origin"] >= stream.stats.bytes  # and the header: no cache tier
        assert by_source["ram"] == by_source["disk"] == by_source["peers"] == 0
    assert not list(isolated_cache.rglob("pieces"))
    assert not list(isolated_cache.rglob("*.json"))  # no catalog record either

    # the check above can fail: asking for the cache explicitly overrides "off"
    pagefault.load(uri, cache=True)
    assert list((isolated_cache / "ram" / "pieces").glob("*/*"))


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("PAGEFAULT_CACHE_DISK_CAPACITY", "lots", "disk_capacity"),
        ("PAGEFAULT_CACHE_RAM_CAPACITY", "-1GiB", "ram_capacity"),
        ("PAGEFAULT_CACHE_RAM_CAPACITY", "8 gigs", "ram_capacity"),
        ("PAGEFAULT_CACHE_PIECE_SIZE", "300000", "piece_size"),  # not a power of two
        ("PAGEFAULT_CACHE_PIECE_SIZE", "4KiB", "piece_size"),  # below the minimum
        ("PAGEFAULT_CACHE_PIECE_SIZE", "big", "piece_size"),
    ],
)
def test_bad_environment_values_name_the_field(
    variable: str, value: str, field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(CacheError, match=field):
        load_config(env={variable: value})
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(app, ["cache", "info", "--json"])
    assert result.exit_code == 2, result.output
    payload = json.loads(result.stdout)
    assert payload["type"] == "CacheError" and field in payload["error"]
    with pytest.raises(CacheError, match=field):
        pagefault.load("http://127.0.0.1:9/never-contacted")


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('disk_capacity = "lots"', "disk_capacity"),
        ("ram_capacity = -5", "ram_capacity"),
        ("ram_capacity = true", "ram_capacity"),
        ("piece_size = 100000", "piece_size"),
    ],
)
def test_bad_file_values_name_the_field(config_file: Path, line: str, field: str) -> None:
    write_config(config_file, f"[cache]\n{line}\n")
    with pytest.raises(CacheError, match=field):
        load_config(env={"PAGEFAULT_CONFIG": str(config_file)})


def test_unknown_key_names_the_key_and_the_file(config_file: Path) -> None:
    write_config(config_file, '[cache]\ndisk_dir = "/x"\ndisk_size = "8GiB"\n')
    with pytest.raises(CacheError, match="disk_size") as caught:
        load_config(env={"PAGEFAULT_CONFIG": str(config_file)})
    assert str(config_file) in str(caught.value)
    assert "disk_capacity" in str(caught.value)  # the known keys are listed


@pytest.mark.parametrize(
    "text", ["[cache\ndisk_dir = '/x'\n", "[cache]\ndisk_dir = /x\n", "cache = 3\n", "\xff\xfe"]
)
def test_malformed_file_names_the_file(config_file: Path, text: str) -> None:
    config_file.parent.mkdir(parents=True)
    config_file.write_bytes(text.encode("latin-1"))
    with pytest.raises(CacheError, match=str(config_file)):
        load_config(env={"PAGEFAULT_CONFIG": str(config_file)})


@pytest.mark.parametrize("field", ["disk_dir", "ram_dir"])
def test_non_string_directory_is_a_cache_error(config_file: Path, field: str) -> None:
    write_config(config_file, f"[cache]\n{field} = 5\n")
    with pytest.raises(CacheError, match=field):
        load_config(env={"PAGEFAULT_CONFIG": str(config_file)})


def test_explicit_env_also_locates_the_config_file(tmp_path: Path) -> None:
    path = write_config(tmp_path / "mine.toml", '[cache]\ndisk_capacity = "8GiB"\n')
    assert load_config(env={"PAGEFAULT_CONFIG": str(path)}).disk_capacity == 8 * GiB
