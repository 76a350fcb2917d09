"""One directory of compiled artifacts kept in step with the bundle stores.

``restore`` fills an empty directory from the newest good bundle (node cache first,
then the shared store); ``publish`` packs it again and, when it holds something new,
puts the bundle in every store. Shared by ``compile_cache`` (inductor's directory) and
the vLLM plugin (vLLM's ``torch_compile_cache``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from pagefault.compile.bundle import digest_of, pack, unpack
from pagefault.compile.stores import BundleStore, newest_bundle
from pagefault.errors import PagefaultError

__all__ = ["CachedDirectory"]

_log = logging.getLogger("pagefault.compile")


class CachedDirectory:
    """``directory``'s artifacts under ``key`` in ``stores`` (the fastest first)."""

    def __init__(
        self,
        directory: Path,
        key: str,
        stores: Sequence[BundleStore],
        *,
        volatile: frozenset[str] = frozenset(),
    ) -> None:
        self.directory, self.key, self.stores = directory, key, list(stores)
        self.volatile = volatile  # files rewritten on every save: not a sign of new work
        self.hit: str | None = None
        self.bundle_bytes = 0
        self.skipped: list[str] = []
        self.published: list[str] = []
        self.published_bytes = 0
        self._held = ""

    def restore(self, *, merge: bool = False) -> None:
        """Fill the directory from a bundle unless it already holds artifacts; with
        ``merge``, add a bundle's missing files to what is there (a directory shared by
        several models, as vLLM's is)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if any(self.directory.iterdir()) and not merge:
            self.hit = "local"
        else:
            self._fetch()
        self._held = self._digest()

    def publish(self) -> None:
        """Store the directory as a new bundle when it holds something new."""
        if self._digest() == self._held:
            return
        data = pack(self.directory)
        digest = digest_of(data)
        self.published_bytes = len(data)
        for store in self.stores:
            try:
                store.put(self.key, digest, data)
            except PagefaultError as exc:
                _log.warning("compile cache: cannot publish to %s: %s", store.name, exc)
                continue
            self.published.append(store.name)
        self._held = self._digest()

    def _fetch(self) -> None:
        for store in self.stores:
            try:
                found = newest_bundle(store, self.key)
                if found is None:
                    continue
                digest, data = found
                unpack(data, digest, self.directory, what=f"{store.name} {self.key}")
            except PagefaultError as exc:
                _log.warning("compile cache: skipping %s: %s", store.name, exc)
                self.skipped.append(f"{store.name}: {exc}")
                continue
            self.hit, self.bundle_bytes = store.name, len(data)
            return

    def _digest(self) -> str:
        return digest_of(pack(self.directory, leave_out=self.volatile))
