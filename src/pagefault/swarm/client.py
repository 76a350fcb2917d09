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
from pagefault.swarm.jsonhttp import call, lines
from pagefault.swarm.messages import FeedLine, ModelFile, ModelStatus, Timeline, read_message
from pagefault.swarm.protocol import FEED_BEAT_S

__all__ = ["AgentClient", "AgentModel", "SwarmFileSource"]

FEED_SILENCE_S = 3 * FEED_BEAT_S  # an agent's feed said nothing for this long: it is hung
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
        """Ask the agent for a model; returns its description once the layout is known.
        The agent holds each answer until then (for up to a second), so a model whose
        description takes longer is asked for again."""
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

    def feed(self, model_id: str) -> Iterator[FeedLine]:
        """The pieces of the model verified on the node, as they come (each once), until
        it is complete or its job failed. ``ControlError`` when the agent goes silent for
        ``FEED_SILENCE_S`` (it sends a line at least every ``FEED_BEAT_S``) or goes away."""
        url = f"{self.url}/v1/models/{quote(model_id)}/feed"
        for line in lines(url, timeout=FEED_SILENCE_S):
            yield read_message(FeedLine, line, sender=f"agent {self.url}")


class AgentModel:
    """One model at the node's agent, opened on first use and shared by its files, whose
    verified pieces one thread follows through the agent's feed (one request per load).

    After one failure every later call fails at once: the chain has moved on."""

    def __init__(
        self,
        agent: str,
        uri: str,
        *,
        open_timeout: float = OPEN_TIMEOUT_S,
        no_progress_s: float = NO_PROGRESS_S,
    ) -> None:
        self.client = AgentClient(agent)
        self.uri = uri
        self._open_timeout = open_timeout
        self._no_progress_s = no_progress_s
        self._model: ModelStatus | None = None
        self._failure: str | None = None
        self._verified: set[int] = set()  # pieces the feed said are on the node
        self._progressed = 0.0  # when the feed last brought a piece (monotonic)
        self._follower: threading.Thread | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

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
        """Block until pieces ``first..last`` are verified on the node; returns how many
        pieces from ``first`` on are there without a gap (at least ``last - first + 1``).
        ``SourceError`` once the feed fails, or says nothing was verified for
        ``no_progress_s`` (a slow swarm still progresses; a stuck agent not)."""
        model = self._describe()
        with self._changed:
            if self._follower is None:
                self._progressed = time.monotonic()
                self._follower = threading.Thread(
                    target=self._follow, args=(model.id,), name="agent-feed", daemon=True
                )
                self._follower.start()
            while not self._verified.issuperset(range(first, last + 1)):
                if self._failure is not None:
                    raise SourceError(self._failure)
                left = self._progressed + self._no_progress_s - time.monotonic()
                if left <= 0:
                    raise self._failed(
                        f"agent {self.client.url}: model {model.id}: no piece verified on "
                        f"the node for {self._no_progress_s:g} s"
                    )
                self._changed.wait(left)
            count = last - first + 1
            while first + count in self._verified:
                count += 1
            return count

    def _follow(self, model_id: str) -> None:
        """The feed, into ``_verified``, until the model is complete; a failure for every
        reader waiting or to come."""
        where = f"agent {self.client.url}: model {model_id}"
        try:
            for line in self.client.feed(model_id):
                if line.error:
                    raise ControlError(f"{where}: {line.error}")
                with self._changed:
                    if line.pieces:
                        self._progressed = time.monotonic()
                    self._verified.update(line.pieces)
                    self._changed.notify_all()
                if line.complete:
                    return
            raise ControlError(f"{where}: the feed ended before the model was complete")
        except ControlError as exc:
            self._fail(str(exc))

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
        with self._changed:
            return self._failed(why)

    def _failed(self, why: str) -> SourceError:
        """Keep the first failure for every reader waiting or to come (lock held)."""
        self._failure = self._failure or why
        self._changed.notify_all()
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
