"""Compile bundles: deterministic, checked before use, never writing outside their
directory; every store kind keeps them content-addressed with a ``latest`` pointer."""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pagefault.compile.bundle import digest_of, pack, unpack
from pagefault.compile.key import compile_key
from pagefault.compile.session import compile_cache
from pagefault.compile.stores import DirectoryStore, ObjectBundleStore, open_store
from pagefault.errors import CacheError, ConfigError, IntegrityError
from pagefault.testing.ports import free_port
from pagefault.testing.redisd import LocalRedis


def tree(root: Path) -> Path:
    (root / "fxgraph" / "ab").mkdir(parents=True)
    (root / "fxgraph" / "ab" / "entry").write_bytes(b"graph")
    (root / "kernel.so").write_bytes(b"\x7fELF...")
    (root / "busy.lock").write_bytes(b"")  # inductor's working files stay behind
    return root


def test_pack_is_deterministic_and_unpack_restores_it(tmp_path: Path) -> None:
    data = pack(tree(tmp_path / "a"))
    assert data == pack(tmp_path / "a")
    count = unpack(data, digest_of(data), tmp_path / "b", what="test")
    assert count == 2 and (tmp_path / "b" / "fxgraph" / "ab" / "entry").read_bytes() == b"graph"
    assert not (tmp_path / "b" / "busy.lock").exists()


def test_corrupt_bundle_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    data = bytearray(pack(tree(tmp_path / "a")))
    digest = digest_of(bytes(data))
    data[600] ^= 0xFF
    with pytest.raises(IntegrityError, match="do not match their digest"):
        unpack(bytes(data), digest, tmp_path / "b", what="test")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/../../escape", "link"])
def test_hostile_entries_are_refused(tmp_path: Path, name: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        if name == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    data = buffer.getvalue()
    with pytest.raises(IntegrityError, match="refusing bundle entry"):
        unpack(data, digest_of(data), tmp_path / "into", what="test")
    assert not (tmp_path / "escape").exists()


def test_the_key_names_the_stack(tmp_path: Path) -> None:
    key = compile_key("llama")
    assert key.torch and key.python and key.device.startswith("cpu:")
    assert key.digest.startswith("llama-") and key.digest == compile_key("llama").digest
    assert compile_key("llama", device="meta").digest != key.digest  # another device: a miss
    with pytest.raises(ConfigError, match="compile cache name"):
        compile_key("../x")


@pytest.fixture
def redis_url() -> Iterator[str]:
    with LocalRedis() as server:
        yield server.url


@pytest.mark.parametrize("kind", ["directory", "file", "redis"])
def test_stores_keep_bundles_behind_a_latest_pointer(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "directory":
        store = DirectoryStore(tmp_path / "node")
    elif kind == "file":
        store = ObjectBundleStore(f"file://{tmp_path / 'shared'}")
    else:
        store = open_store(request.getfixturevalue("redis_url"))
    assert store is not None and store.latest("k") is None and store.get("k", "0" * 64) is None
    for payload in (b"first", b"second"):
        store.put("k", digest_of(payload), payload)
    assert store.latest("k") == digest_of(b"second")
    assert store.get("k", digest_of(b"first")) == b"first"  # content-addressed: both kept


def test_unreachable_redis_fails_fast_as_a_cache_error() -> None:
    port = free_port()  # nobody listens on it
    store = open_store(f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()
    with pytest.raises(CacheError):
        store.latest("k")  # type: ignore[union-attr]
    assert time.monotonic() - started < 10


def test_unknown_store_schemes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="redis://, file://, s3://"):
        open_store("ftp://host/x")


def test_an_unreachable_store_costs_a_warning_not_a_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Entering and leaving the block with a dead store: the cause is recorded, no error."""
    port = free_port()
    monkeypatch.setenv("PAGEFAULT_CACHE_DIR", str(tmp_path / "node"))
    monkeypatch.setenv("PAGEFAULT_CACHE_RAM_DIR", "off")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "before"))
    started = time.monotonic()
    with compile_cache("dead-store", store=f"redis://127.0.0.1:{port}/0") as cached:
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(cached.directory)
    assert time.monotonic() - started < 15
    assert cached.stats.hit is None and "Connection refused" in cached.stats.skipped[0]
    assert "compile cache: skipping" in caplog.text
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "before")  # restored


def test_the_node_keeps_only_the_newest_bundles(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "node")
    for index in range(5):
        payload = f"bundle {index}".encode()
        store.put("k", digest_of(payload), payload)
    kept = sorted(p.name for p in (tmp_path / "node" / "k").glob("*.tar"))
    assert len(kept) == 2 and f"{digest_of(b'bundle 4')}.tar" in kept
    assert store.get("k", store.latest("k") or "") == b"bundle 4"


def test_without_a_node_cache_only_the_store_holds_bundles(
    tmp_path: Path, isolated_cache: Path
) -> None:
    store = f"file://{tmp_path / 'store'}"
    with compile_cache("no-node", store=store, cache=False) as cold:
        (cold.directory / "kernel.so").write_bytes(b"\x7fELF built")  # what inductor leaves
        scratch = cold.directory
    assert cold.stats.published == [store]
    assert not scratch.exists()  # the scratch directory went with the block
    assert not (isolated_cache / "disk" / "compile").exists()
    with compile_cache("no-node", store=store, cache=False) as warm:
        assert (warm.directory / "kernel.so").read_bytes() == b"\x7fELF built"
    assert warm.stats.hit == store
