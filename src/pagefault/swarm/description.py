"""A model's description, described at the origin once per fleet start.

Every node joining a swarm needs the model's description (files, sizes, ETags, index,
published piece manifest) before it can build its torrent. Asked of the origin by every
node, those requests queue behind the first fetcher's stream: in an 8-node fleet on
40 Mbit/s links the last nodes described 0.3 s after the first and started that much
later. So one node describes and shares what it found through the coordinator; the rest
take it from there. What comes back is checked as if it came from the origin: plain file
names, the index against the shards (and against its digest when a manifest is
published), the manifest's own validation. Without a coordinator, or when it does not
answer, a node describes the origin itself.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time

from pagefault.errors import ControlError, FormatError, PagefaultError
from pagefault.formats import INDEX_SUFFIX, parse_index
from pagefault.formats.index import validate_shard_name
from pagefault.manifest import PieceManifest
from pagefault.sources.describe import ModelDescription, RemoteFile, check_small_file, describe
from pagefault.sources.remote_dir import RemoteDirectory
from pagefault.swarm.coordinator_client import CoordinatorClient
from pagefault.swarm.messages import SharedDescription, SharedFile

__all__ = ["described", "share", "unshare"]

_log = logging.getLogger("pagefault.agent")
_WAIT_S = 5.0  # for another node's description, at most (then describe here)
_POLL_S = 0.02  # between asks while another node describes (a describe takes ~40 ms)


def described(uri: str, coordinator: CoordinatorClient, stop: threading.Event) -> ModelDescription:
    """``uri``'s description: the one another node of the swarm shared, or described here
    (and shared) when this node is the first, nobody shared one within a bounded time, or
    the coordinator does not answer. Raises what ``describe`` raises."""
    deadline = time.monotonic() + _WAIT_S
    while coordinator.configured and not stop.is_set() and time.monotonic() < deadline:
        turn = coordinator.describer_turn()
        if turn is None:
            break
        if turn.description is not None:
            try:
                return unshare(turn.description, uri, sender=f"swarm {coordinator.swarm}")
            except PagefaultError as exc:
                _log.warning(
                    "describing %s myself: the shared description is unusable: %s", uri, exc
                )
                break
        if turn.describe:
            description = describe(uri)
            coordinator.share_description(share(description))
            return description
        stop.wait(_POLL_S)
    return describe(uri)


def share(description: ModelDescription) -> SharedDescription:
    """``description`` as the coordinator keeps it."""
    return SharedDescription(
        uri=description.uri,
        entry=description.entry,
        files=[
            SharedFile(name=f.name, size=f.size, etag=f.etag, version=f.version)
            for f in description.files
        ],
        index=_encode(description.index),
        pieces=_encode(description.pieces.to_json() if description.pieces else None),
    )


def unshare(shared: SharedDescription, uri: str, *, sender: str) -> ModelDescription:
    """``shared`` as a description of ``uri``, checked as if the origin had sent it;
    ``ControlError`` when it describes another URI, ``FormatError`` or ``IntegrityError``
    when its parts do not hold (each naming ``sender``)."""
    where = f"{sender}: description of {uri}"
    if shared.uri != uri:
        raise ControlError(f"{where}: it describes {shared.uri!r}")
    directory, _ = RemoteDirectory.split(uri)
    validate_shard_name(
        shared.entry, where=f"{where}: entry", suffixes=(".safetensors", INDEX_SUFFIX)
    )
    for i, file in enumerate(shared.files):
        validate_shard_name(file.name, where=f"{where}: files[{i}]")
    index = _decode(shared.index, where=f"{where}: index")
    raw_pieces = _decode(shared.pieces, where=f"{where}: pieces")
    pieces = (
        None if raw_pieces is None else PieceManifest.from_json(raw_pieces, name=f"{where}: pieces")
    )
    names = [f.name for f in shared.files]
    if index is None:
        if names != [shared.entry]:
            raise FormatError(f"{where}: a single-file model must list only {shared.entry!r}")
    else:
        if pieces is not None and shared.entry in {f.name for f in pieces.files}:
            check_small_file(pieces, shared.entry, index, where=f"{where}: index")
        if list(parse_index(index, name=f"{where}: index").shards) != names:
            raise FormatError(f"{where}: its files are not its index's shards")
    files = tuple(RemoteFile(f.name, f.size, f.etag, f.version) for f in shared.files)
    return ModelDescription(uri, directory.uri, shared.entry, files, index, pieces)


def _encode(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _decode(text: str | None, *, where: str) -> bytes | None:
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise FormatError(f"{where}: not base64: {exc}") from exc
