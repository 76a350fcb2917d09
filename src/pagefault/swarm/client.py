"""The loader's side of the node agent: the swarm as a link of a load's source chain.

Each model file becomes a :class:`SwarmFileSource` that reads the agent's copy as soon as
the pieces under a range are verified on the node (streaming while swarming). The model
is opened at the agent on the first read, within a bounded time; any failure (no agent,
no answer, the agent's job failed or the agent died mid-load) is a ``SourceError``, so
the chain reads the range, and the rest of the load, from the origin instead.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import suppress
from pathlib import Path
from urllib.parse import quote

from pagefault.errors import ControlError, SourceError
from pagefault.sources.base import Buffer
from pagefault.sources.describe import RemoteFile
from pagefault.sources.local import read_fully
from pagefault.swarm.jsonhttp import call
from pagefault.swarm.messages import ModelFile, ModelStatus, Timeline, WaitReply, read_message

__all__ = ["AgentClient", "AgentModel", "SwarmFileSource"]

_WAIT_S = 30.0  # one long poll; the agent itself falls back to the origin when stalled
# The agent verified no piece at all for this long (its own stall policy acts after 10 s):
# something is wrong with it, and the load reads the rest from the origin instead.
NO_PROGRESS_S = 60.0
OPEN_TIMEOUT_S = 30.0  # how long the agent may take to learn the model's layout
CALL_TIMEOUT_S = 5.0  # one control call that should answer at once


class AgentClient:
    """The node agent's local API (``pagefault agent --api``). Raises ``ControlError``."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def open(self, uri: str, *, timeout: float | None = None) -> ModelStatus:
        """Ask the agent for a model; returns its description once the layout is known."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            answer = call(
                f"{self.url}/v1/models", method="POST", body={"uri": uri}, timeout=CALL_TIMEOUT_S
            )
            model = read_message(ModelStatus, answer, sender=f"agent {self.url}")
            if model.error:
                raise ControlError(f"agent {self.url}: {uri}: {model.error}")
            if model.files:
                return model
            if deadline is not None and time.monotonic() > deadline:
                raise ControlError(f"agent {self.url}: no layout for {uri} after {timeout:g} s")
            time.sleep(0.05)

    def follow(self, model: ModelStatus, *, interval: float) -> Iterator[ModelStatus]:
        """``model``'s description every ``interval`` seconds until it is complete or failed."""
        while model.state not in ("complete", "failed"):
            time.sleep(interval)
            answer = call(f"{self.url}/v1/models/{quote(model.id)}")
            model = read_message(ModelStatus, answer, sender=f"agent {self.url}")
            yield model

    def timeline(self, model_id: str) -> Timeline:
        """When each of the model's pieces was verified on the node."""
        answer = call(f"{self.url}/v1/models/{quote(model_id)}/timeline")
        return read_message(Timeline, answer, sender=f"agent {self.url}")

    def wait(
        self,
        model_id: str,
        first: int,
        last: int,
        *,
        timeout: float | None = None,
        no_progress_s: float = NO_PROGRESS_S,
    ) -> int:
        """Block until pieces ``first..last`` are verified on the node; returns how many
        pieces from ``first`` on are there without a gap (at least ``last - first + 1``).
        ``ControlError`` after ``timeout`` seconds, or once the node has verified no piece
        at all for ``no_progress_s`` (a slow swarm still progresses; a stuck agent not)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        have, progressed = -1, time.monotonic()
        while True:
            left = min(_WAIT_S, no_progress_s)
            if deadline is not None:
                left = min(left, deadline - time.monotonic())
            if left <= 0:
                raise ControlError(f"agent {self.url}: model {model_id}: timed out")
            query = f"first={first}&last={last}&timeout={left:.3f}"
            url = f"{self.url}/v1/models/{quote(model_id)}/wait?{query}"
            reply = read_message(WaitReply, call(url, timeout=left + 10), sender=self.url)
            if reply.error:
                raise ControlError(f"agent {self.url}: model {model_id}: {reply.error}")
            if reply.ready:
                return max(reply.contiguous, last - first + 1)
            if reply.have is None:  # an older agent: its progress cannot be seen here
                progressed = time.monotonic()
            elif reply.have != have:
                have, progressed = reply.have, time.monotonic()
            elif time.monotonic() - progressed >= no_progress_s:
                raise ControlError(
                    f"agent {self.url}: model {model_id}: no piece verified on the node "
                    f"for {no_progress_s:.0f} s"
                )


class AgentModel:
    """One model at the node's agent, opened on first use and shared by its files.

    After one failure every later call fails at once: the chain has moved on."""

    def __init__(self, agent: str, uri: str, *, open_timeout: float = OPEN_TIMEOUT_S) -> None:
        self.client = AgentClient(agent)
        self.uri = uri
        self._open_timeout = open_timeout
        self._model: ModelStatus | None = None
        self._failure: str | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Open the model at the agent now (bounded); a failure is kept for the first read,
        which then falls through to the next link with a warning."""
        with suppress(SourceError):
            self._describe()

    def file(self, name: str) -> tuple[ModelFile, int]:
        """The agent's entry for one file (its path, size and first piece), and the size
        of the swarm's pieces."""
        model = self._describe()
        entry = next((f for f in model.files if f.name == name), None)
        if entry is None or model.piece_size is None:
            raise self._fail(f"agent {self.client.url} has no file {name!r} in {self.uri}")
        return entry, model.piece_size

    def wait(self, first: int, last: int) -> int:
        model = self._describe()
        try:
            return self.client.wait(model.id, first, last)
        except ControlError as exc:
            raise self._fail(str(exc)) from exc

    def _describe(self) -> ModelStatus:
        with self._lock:
            if self._failure is not None:
                raise SourceError(self._failure)
            if self._model is None:
                try:
                    self._model = self.client.open(self.uri, timeout=self._open_timeout)
                except ControlError as exc:
                    self._failure = str(exc)
                    raise SourceError(self._failure) from exc
            return self._model

    def _fail(self, why: str) -> SourceError:
        with self._lock:
            self._failure = self._failure or why
        return SourceError(why)


class SwarmFileSource:
    """One file the agent is filling; reads block until their pieces are verified."""

    def __init__(self, model: AgentModel, file: RemoteFile) -> None:
        self._model = model
        self._file = file
        self._entry: tuple[ModelFile, int] | None = None  # the agent's file, piece size
        self._ready: set[int] = set()  # pieces of this file known verified: no round trip
        self._fd: int | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"swarm:{self._file.name}"

    def size(self) -> int:
        return self._file.size

    def await_range(self, offset: int, length: int) -> None:
        """Block until the agent has verified (and cached) every piece under the range."""
        entry, piece_size = self._describe()
        first = offset // piece_size
        last = (max(offset + length, 1) - 1) // piece_size
        if all(p in self._ready for p in range(first, last + 1)):
            return
        contiguous = self._model.wait(entry.first_piece + first, entry.first_piece + last)
        with self._lock:
            self._ready.update(range(first, min(first + contiguous, entry.pieces)))

    def read_into(self, offset: int, buffers: Sequence[Buffer]) -> None:
        """Wait for the range, then read libtorrent's file (no node cache to read from)."""
        self.await_range(offset, sum(memoryview(b).nbytes for b in buffers))
        read_fully(self._open(self._describe()[0]), offset, buffers, name=self.name)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _describe(self) -> tuple[ModelFile, int]:
        with self._lock:
            if self._entry is None:
                entry, piece_size = self._model.file(self._file.name)
                if entry.size != self._file.size:
                    raise SourceError(
                        f"{self.name}: the agent has {entry.size} bytes, the origin "
                        f"{self._file.size}: a different version of the model"
                    )
                if None not in (entry.etag, self._file.etag) and entry.etag != self._file.etag:
                    raise SourceError(
                        f"{self.name}: the agent has the version with ETag {entry.etag}, the "
                        f"origin serves {self._file.etag}: a different version of the model"
                    )
                self._entry = entry, piece_size
            return self._entry

    def _open(self, entry: ModelFile) -> int:
        """The agent's file, opened once its first wanted pieces exist."""
        with self._lock:
            if self._fd is None:
                try:
                    self._fd = os.open(Path(entry.path), os.O_RDONLY | os.O_CLOEXEC)
                except OSError as exc:
                    raise SourceError(f"{self.name}: cannot open the agent's copy: {exc}") from exc
            return self._fd
