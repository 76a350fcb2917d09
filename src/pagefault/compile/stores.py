"""Where compile bundles live: the node cache, an object store, or Redis.

Every store keeps bundles content-addressed (``<key>/<sha256>.tar``) plus a ``latest``
pointer per key; a writer stores the bundle first and moves the pointer last, so a
reader never sees a pointer to a missing or partial bundle, and two writers racing
leave one complete bundle current. Stores answer ``None`` for a miss; failures
(unreachable, refused) raise ``CacheError`` for the caller to report and skip.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import obstore
from obstore.store import LocalStore

from pagefault.cache.config import CacheConfig, load_config
from pagefault.errors import CacheError, ConfigError, PagefaultError
from pagefault.sources.object_store import store_for_uri
from pagefault.sources.store_errors import first_line
from pagefault.system.files import write_atomic

__all__ = [
    "STORE_ENV",
    "BundleStore",
    "DirectoryStore",
    "ObjectBundleStore",
    "RedisBundleStore",
    "compile_root",
    "newest_bundle",
    "open_store",
]

if TYPE_CHECKING:
    from obstore.store import ObjectStore

T = TypeVar("T")
STORE_ENV = "PAGEFAULT_COMPILE_STORE"
_REDIS_TIMEOUT_S = 3.0
# An object store call gives up after this (obstore itself retries for up to a minute):
# an unreachable store must cost a warning, not a stalled start.
OBJECT_TIMEOUT_S = 15.0
_KEPT_BUNDLES = 2  # per key in the node cache


class BundleStore(Protocol):
    name: str

    def list_keys(self) -> list[str]: ...
    def latest(self, key: str) -> str | None: ...
    def get(self, key: str, digest: str) -> bytes | None: ...
    def put(self, key: str, digest: str, data: bytes) -> None: ...


class DirectoryStore:
    """Bundles in a local directory (the node cache's ``compile/bundles``)."""

    def __init__(self, root: Path, *, name: str = "node") -> None:
        self.root, self.name = root, name

    def list_keys(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "latest").is_file())

    def latest(self, key: str) -> str | None:
        try:
            return (self.root / key / "latest").read_text().strip() or None
        except FileNotFoundError:
            return None

    def get(self, key: str, digest: str) -> bytes | None:
        try:
            return (self.root / key / f"{digest}.tar").read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, digest: str, data: bytes) -> None:
        (self.root / key).mkdir(parents=True, exist_ok=True)
        write_atomic(self.root / key / f"{digest}.tar", [data])
        write_atomic(self.root / key / "latest", [digest.encode()])
        self._prune(key)

    def _prune(self, key: str) -> None:
        """Keep the newest bundles of ``key`` only: every publish adds one, and a reader
        that just read the previous pointer may still be fetching the one before."""
        bundles = sorted(
            (self.root / key).glob("*.tar"), key=lambda p: p.stat().st_mtime_ns, reverse=True
        )
        for old in bundles[_KEPT_BUNDLES:]:
            old.unlink(missing_ok=True)


class ObjectBundleStore:
    """Bundles under a prefix of ``file://``, ``s3://``, ``gs://`` or ``az://`` (obstore;
    credentials from the environment, as for model loads)."""

    def __init__(self, uri: str) -> None:
        self.name = uri
        self._store: ObjectStore
        if uri.startswith("file://"):
            root = Path(uri.removeprefix("file://"))
            root.mkdir(parents=True, exist_ok=True)
            self._store, self._prefix = LocalStore(root), ""
        else:
            self._store, prefix = store_for_uri(uri)
            self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def list_keys(self) -> list[str]:
        listing = self._bounded(
            lambda: obstore.list_with_delimiter(self._store, self._prefix or None)
        )
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in listing["common_prefixes"])

    def latest(self, key: str) -> str | None:
        data = self._read(f"{key}/latest")
        return data.decode().strip() if data else None

    def get(self, key: str, digest: str) -> bytes | None:
        return self._read(f"{key}/{digest}.tar")

    def put(self, key: str, digest: str, data: bytes) -> None:
        def write() -> None:
            obstore.put(self._store, f"{self._prefix}{key}/{digest}.tar", data)
            obstore.put(self._store, f"{self._prefix}{key}/latest", digest.encode())

        self._bounded(write)

    def _read(self, path: str) -> bytes | None:
        def read() -> bytes | None:
            try:
                return bytes(obstore.get(self._store, self._prefix + path).bytes())
            except (FileNotFoundError, obstore.exceptions.NotFoundError):
                return None

        return self._bounded(read)

    def _bounded(self, action: Callable[[], T]) -> T:
        """``action()`` on a daemon thread, given up (``CacheError``) after the timeout."""
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = action()
            except BaseException as exc:  # handed to the caller below
                box["error"] = exc

        worker = threading.Thread(target=run, name="pagefault-compile-store", daemon=True)
        worker.start()
        worker.join(OBJECT_TIMEOUT_S)
        if worker.is_alive():
            raise CacheError(f"{self.name}: no answer within {OBJECT_TIMEOUT_S:.0f} s")
        error = box.get("error")
        if isinstance(error, obstore.exceptions.BaseError | OSError):
            raise CacheError(f"{self.name}: {first_line(error)}") from error
        if error is not None:
            raise error
        return box["value"]  # type: ignore[no-any-return]


class RedisBundleStore:
    """Bundles as Redis values (``pagefault:compile:<key>:<digest>``), as the production
    report behind this feature kept them; every call gives up after a few seconds."""

    def __init__(self, url: str) -> None:
        import redis  # noqa: PLC0415 - only for redis:// stores

        self.name = url
        self._errors = (redis.RedisError, OSError)
        self._client = redis.Redis.from_url(
            url, socket_timeout=_REDIS_TIMEOUT_S, socket_connect_timeout=_REDIS_TIMEOUT_S
        )

    def list_keys(self) -> list[str]:
        found: Any = self._call(lambda: list(self._client.scan_iter("pagefault:compile:*:latest")))
        return sorted(bytes(k).decode().split(":")[2] for k in found)

    def latest(self, key: str) -> str | None:
        value: Any = self._call(lambda: self._client.get(f"pagefault:compile:{key}:latest"))
        return bytes(value).decode() if value else None

    def get(self, key: str, digest: str) -> bytes | None:
        value: Any = self._call(lambda: self._client.get(f"pagefault:compile:{key}:{digest}"))
        return bytes(value) if value is not None else None

    def put(self, key: str, digest: str, data: bytes) -> None:
        def write() -> None:
            pipe = self._client.pipeline(transaction=True)  # the pointer moves with the bundle
            pipe.set(f"pagefault:compile:{key}:{digest}", data)
            pipe.set(f"pagefault:compile:{key}:latest", digest)
            pipe.execute()

        self._call(write)

    def _call(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except self._errors as exc:
            raise CacheError(f"{self.name}: {exc}") from exc


def newest_bundle(store: BundleStore, key: str) -> tuple[str, bytes] | None:
    """The digest and bytes ``key``'s ``latest`` pointer names, or None when there is none."""
    digest = store.latest(key)
    data = store.get(key, digest) if digest else None
    return (digest, data) if digest is not None and data is not None else None


def compile_root(config: CacheConfig | None = None) -> Path:
    """The compile area (inductor directories and bundles) of the node cache ``config``
    describes; by default the configured one."""
    return (config or load_config()).disk_dir.expanduser() / "compile"


def open_store(uri: str | None) -> BundleStore | None:
    """The shared store ``uri`` (or ``PAGEFAULT_COMPILE_STORE``) names, or None."""
    uri = uri or os.environ.get(STORE_ENV) or None
    if uri is None:
        return None
    scheme = uri.partition("://")[0]
    try:
        if scheme in ("redis", "rediss", "unix"):
            return RedisBundleStore(uri)
        if scheme in ("file", "s3", "gs", "az"):
            return ObjectBundleStore(uri)
    except PagefaultError:
        raise
    except Exception as exc:  # a client library refusing the URI
        raise ConfigError(f"{uri}: cannot open the compile store: {exc}") from exc
    raise ConfigError(
        f"{uri}: a compile store is redis://, file://, s3://, gs:// or az:// ({STORE_ENV})"
    )
