"""How an agent runs: its name, where peers and local processes reach it, its coordinator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pagefault.swarm.sockets import NOTSENT_LOWAT

__all__ = ["AgentConfig"]


@dataclass(frozen=True)
class AgentConfig:
    node: str
    listen: str  # "ip:port" of the libtorrent SSL listener, as peers will reach it
    api: str = "127.0.0.1:7070"  # the local API (the node's processes)
    data_dir: Path = Path("/var/lib/pagefault/swarm")
    coordinator: str | None = None
    token: str | None = None
    zone: str = ""
    stall_s: float = 10.0
    origin_threads: int = 4
    notsent_lowat: int = NOTSENT_LOWAT  # bytes; 0 leaves the system's setting alone
