"""The control planes' messages: what agents, coordinators and loaders send each other.

Each request body and answer is one of these models, validated where it arrives: a
malformed heartbeat is refused with the field named (HTTP 400) instead of failing as a
``KeyError`` inside the placement, and a job reads ``beat.upstreams``, not dict keys.
Unknown fields are ignored, so an older agent and a newer coordinator still talk.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pagefault.errors import ControlError

__all__ = [
    "Beat",
    "Credentials",
    "DescriberTurn",
    "FeedLine",
    "Heartbeat",
    "Message",
    "ModelFile",
    "ModelRequest",
    "ModelStatus",
    "Peer",
    "Report",
    "SharedDescription",
    "SharedFile",
    "SwarmStatus",
    "Timeline",
    "WaitReply",
    "read_message",
]

_ADDRESS = r"^\S+:\d{1,5}$"  # "ip:port", as split_address reads it


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Heartbeat(Message):
    """An agent's beat: where its peers reach it, the seq it was given (-1: new)."""

    address: str = Field(pattern=_ADDRESS, description="ip:port of its libtorrent listener")
    seq: int = -1
    zone: str = ""
    link_mbit: float = Field(0.0, ge=0, allow_inf_nan=False, description="declared link rate")
    stats: dict[str, Any] = Field(default_factory=dict)


class Peer(Message):
    """An upstream as its child sees it; ``have`` (its piece count at its last heartbeat)
    tells the child whether it is waiting on a slow chain or on a broken link."""

    node: str
    address: str
    have: int = 0


class Beat(Message):
    """The coordinator's answer to a heartbeat: this node's place in the swarm.

    ``settling``: Redis lost the swarm's state and members are still coming back; keep
    the current placement. ``excluded``: reported corrupt; nobody feeds from this node.
    """

    seq: int
    excluded: bool = False
    settling: bool = False
    stripes: int = Field(1, ge=1)
    upstreams: list[Peer | None] = Field(default_factory=list)  # per stripe; None: origin
    fetch: list[int] = Field(default_factory=list)  # the stripes this node reads from the origin
    position: int = 0
    size: int = Field(1, ge=1)  # live members
    manifest: bool = False  # whether a first fetcher published the piece manifest


class Credentials(Message):
    """A node's swarm certificate, and the stripe count its torrents need before it joins."""

    ca: str
    cert: str
    key: str
    stripes: int = Field(1, ge=1)


class Report(Message):
    """A node reporting a peer that sent it corrupt pieces."""

    reason: str = ""
    reporter: str = ""  # the reporting node


class SwarmStatus(Message):
    swarm: str
    nodes: list[dict[str, Any]]  # placement plus each node's own stats, for people
    bad: list[str]


class ModelRequest(Message):
    """A local process asking its agent for a model."""

    uri: str = Field(min_length=1)


class ModelFile(Message):
    """Where one model file lies on the node (the agent's seed file) and its pieces."""

    name: str
    size: int
    first_piece: int  # its first piece's index in the swarm's numbering
    pieces: int
    path: str
    # the origin's ETag of the version the agent holds (None: not known, or an older agent)
    etag: str | None = None


class SharedFile(Message):
    """One file of a shared description: the version the describing node found."""

    name: str  # checked as a plain file name where it is used
    size: int = Field(ge=0)
    etag: str | None = None
    version: str | None = None


class SharedDescription(Message):
    """A model as the first node of a fleet to describe it found it at the origin, shared
    through the coordinator: the rest of the fleet starts without asking the origin again
    (each such request queues behind the first fetcher's stream). Binary parts are
    base64: ``index`` the index file's bytes, ``pieces`` the piece manifest's JSON."""

    uri: str
    entry: str
    files: list[SharedFile] = Field(min_length=1)
    index: str | None = None
    pieces: str | None = None


class DescriberTurn(Message):
    """The coordinator's answer to "who describes this model?": the shared description
    once there is one, else whether the asking node is the one to describe it."""

    description: SharedDescription | None = None
    describe: bool = False


class ModelStatus(Message):
    """A model at its node's agent: progress, byte counts, where its files are, and every
    reason the swarm did not (fully) serve it. What ``swarm fetch --json`` prints."""

    id: str
    uri: str
    state: str  # starting, swarming, complete, failed
    pieces: int | None  # None until the layout is known
    have: int
    from_origin: int
    from_peers: int
    uploaded: int
    first_piece_s: float | None
    complete_s: float | None
    error: str | None
    coordinator_error: str | None
    reasons: list[str]
    save_path: str
    cache_dir: str | None  # None: admitted pieces are not in the node cache
    piece_size: int | None
    files: list[ModelFile]
    upstreams: list[str | None]  # per stripe: the upstream's address; None: the origin


class Timeline(Message):
    """When each piece of a model was verified on a node: ``started_at`` (epoch seconds,
    when the node's job began) plus ``verified_s[piece]`` (None: not yet). Nodes' clocks
    being one, timelines of a fleet line up hop by hop (``swarm_bench.py --timeline``)."""

    started_at: float
    verified_s: list[float | None]


class FeedLine(Message):
    """One line of a model's feed (``GET /v1/models/{id}/feed``, newline-delimited JSON):
    the pieces verified on the node since the previous line, in the order they came."""

    pieces: list[int] = Field(default_factory=list)
    complete: bool = False  # the last line: every piece is here
    error: str | None = None  # the last line: the job failed


class WaitReply(Message):
    ready: bool
    error: str | None
    contiguous: int  # pieces from ``first`` on that are there without a gap
    # pieces verified on the node, anywhere in the model: its progress (None: an agent
    # older than this field, whose progress the loader cannot see)
    have: int | None = None


M = TypeVar("M", bound=Message)


def read_message(kind: type[M], data: Any, *, sender: str) -> M:
    """``data`` (a decoded JSON answer from ``sender``) as a ``kind``; a ``ControlError``
    naming the field that is wrong, like any other unusable answer."""
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        raise ControlError(f"{sender} sent an unreadable {kind.__name__}: {exc}") from exc
