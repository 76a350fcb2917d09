"""Cross-process locks and read leases on the cache, built on ``flock``.

``flock`` locks die with their process, so a loader killed at any point never leaves a
lock held. A lock file is unlinked by its holder on release (no litter); a waiter that
then wins the lock on the unlinked file notices the inode changed and tries again.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

__all__ = ["FileLock", "Lease", "live_leases", "reap_unheld"]

log = logging.getLogger("pagefault.cache")


class FileLock:
    """An exclusive lock on ``path``, held across processes and threads (one open per use)."""

    def __init__(self, path: Path, *, keep: bool = False) -> None:
        self.path = path
        self._keep = keep  # keep the file: for long-lived locks that many wait on
        self._fd = -1

    def __enter__(self) -> FileLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:  # a read-only or full runtime dir: go on, uncoordinated
            log.warning("cannot lock %s (%s); this process fetches on its own", self.path, exc)
            return self
        while True:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, self.path):
                self._fd = fd
                return self
            os.close(fd)  # its holder unlinked it while we waited: lock the new one
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def __exit__(self, *exc_info: object) -> None:
        if self._fd < 0:
            return
        if not self._keep:
            with suppress(FileNotFoundError):
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = -1


class Lease:
    """A reader's claim on cache files (by file key): eviction skips them while it lives.

    The lease file is locked before it gets its final name, so any lease another process
    can see is either held (its reader is alive) or stale (its reader died: unlocked).
    """

    def __init__(self, directory: Path, file_keys: Iterable[str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        token = f"{os.getpid()}.{secrets.token_hex(6)}"
        temp = directory / f".{token}.tmp"
        self.path = directory / f"{token}.lease"
        self._fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        os.write(self._fd, json.dumps(sorted(set(file_keys))).encode())
        os.rename(temp, self.path)

    def release(self) -> None:
        if self._fd >= 0:
            with suppress(FileNotFoundError):
                os.unlink(self.path)
            os.close(self._fd)
            self._fd = -1


def live_leases(directory: Path) -> set[str]:
    """File keys claimed by live readers; leases of dead readers are removed."""
    keys: set[str] = set()
    for path in directory.glob("*.lease") if directory.is_dir() else []:
        if reap_unheld(path):
            keys.update(_lease_keys(path))
    return keys


def reap_unheld(path: Path) -> bool | None:
    """True while a live process holds ``path`` locked; else remove it (its holder died)
    and return False. None when it was already gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # flock needs no write access
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        path.unlink(missing_ok=True)
        return False
    finally:
        os.close(fd)


def _lease_keys(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):  # released meanwhile, or not ours
        return []
    return [k for k in data if isinstance(k, str)] if isinstance(data, list) else []


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
