"""The loader's side of the agent: each model file becomes a source that reads the agent's
copy as soon as the pieces under a range are verified (streaming while swarming)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pagefault.errors import PagefaultError
from pagefault.manifest import PieceManifest
from pagefault.sources import Source
from pagefault.sources.base import Buffer
from pagefault.sources.local import read_fully
from pagefault.sources.remote import RemoteSource
from pagefault.sources.resolve import ResolvedModel, file_name, resolve_remote
from pagefault.swarm.jsonhttp import call

__all__ = ["AgentClient", "SwarmFileSource", "resolve_via_agent"]

_WAIT_S = 30.0  # one long poll; a read gives up after the agent's job fails


class AgentClient:
    """The node agent's local API (``pagefault agent --api``)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def open(self, uri: str) -> dict[str, Any]:
        """Ask the agent for a model; returns its description once the layout is known."""
        while True:
            model = call(f"{self.url}/v1/models", method="POST", body={"uri": uri}, timeout=10)
            if model.get("error"):
                raise PagefaultError(f"agent {self.url}: {uri}: {model['error']}")
            if model.get("files"):
                return dict(model)
            time.sleep(0.05)

    def follow(self, model: dict[str, Any], *, interval: float) -> Iterator[dict[str, Any]]:
        """``model``'s description every ``interval`` seconds until it is complete or failed."""
        while model["state"] not in ("complete", "failed"):
            time.sleep(interval)
            model = call(f"{self.url}/v1/models/{quote(model['id'])}")
            yield model

    def wait(self, model_id: str, first: int, last: int) -> None:
        query = f"first={first}&last={last}&timeout={_WAIT_S}"
        while True:
            reply = call(
                f"{self.url}/v1/models/{quote(model_id)}/wait?{query}", timeout=_WAIT_S + 10
            )
            if reply.get("error"):
                raise PagefaultError(f"agent {self.url}: model {model_id}: {reply['error']}")
            if reply.get("ready"):
                return


class SwarmFileSource:
    """One file the agent is filling; reads block until their pieces are verified."""

    def __init__(self, client: AgentClient, model_id: str, entry: dict[str, Any], piece_size: int):
        self.client = client
        self.model_id = model_id
        self._name = str(entry["name"])
        self._size = int(entry["size"])
        self._path = Path(entry["path"])
        self._first = int(entry["first_piece"])
        self._piece_size = piece_size
        self._ready_below = 0  # bytes [0, n) known complete: no round trip for them
        self._fd: int | None = None

    @property
    def name(self) -> str:
        return self._name

    def size(self) -> int:
        return self._size

    def read_into(self, offset: int, buffers: Sequence[Buffer]) -> None:
        end = offset + sum(memoryview(b).nbytes for b in buffers)
        if end > self._ready_below:
            first = self._first + offset // self._piece_size
            last = self._first + (max(end, 1) - 1) // self._piece_size
            self.client.wait(self.model_id, first, last)
            if offset <= self._ready_below:
                self._ready_below = end
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        read_fully(self._fd, offset, buffers, name=self._name)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def resolve_via_agent(uri: str, agent: str) -> ResolvedModel:
    """Resolve ``uri`` with its files served by the node agent at ``agent``."""
    client = AgentClient(agent)

    def wrap(shards: list[RemoteSource], pieces: PieceManifest | None) -> list[Source]:
        model = client.open(uri)
        for shard in shards:  # the agent reads the origin, not this process
            shard.close()
        entries = {f["name"]: f for f in model["files"]}
        return [
            SwarmFileSource(client, model["id"], entries[file_name(s.name)], model["piece_size"])
            for s in shards
        ]

    return resolve_remote(uri, wrap=wrap)
