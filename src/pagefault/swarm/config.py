"""How an agent runs: its name, where peers and local processes reach it, its coordinator."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pagefault.cache.config import config_path, read_table
from pagefault.errors import SwarmError
from pagefault.swarm.sockets import NOTSENT_LOWAT
from pagefault.system.switches import OFF_WORDS

__all__ = ["AgentConfig", "configured_agent"]


@dataclass(frozen=True)
class AgentConfig:
    node: str
    listen: str  # "ip:port" of the libtorrent SSL listener, as peers will reach it
    api: str = "127.0.0.1:7070"  # the local API (the node's processes)
    data_dir: Path = Path("/var/lib/pagefault/swarm")
    coordinator: str | None = None
    token: str | None = None
    zone: str = ""
    link_mbit: float = 0.0  # declared link rate (placement keeps slow nodes out of the way)
    stall_s: float = 10.0
    origin_threads: int = 4
    notsent_lowat: int = NOTSENT_LOWAT  # bytes; 0 leaves the system's setting alone


def configured_agent(env: Mapping[str, str] | None = None) -> str | None:
    """The node agent loads go through: ``$PAGEFAULT_AGENT``, else ``agent`` in the config
    file's ``[swarm]`` table; None (or ``off``) when there is none."""
    env = os.environ if env is None else env
    value = env.get("PAGEFAULT_AGENT")
    if value is None:
        path = config_path(env)
        table = read_table(path, "swarm") if path.is_file() else {}
        unknown = sorted(set(table) - {"agent"})
        if unknown:
            raise SwarmError(f"{path}: unknown [swarm] setting(s) {unknown}; known: ['agent']")
        value = table.get("agent")
    if value is None or str(value).strip().lower() in ("", *OFF_WORDS):
        return None
    url = str(value).strip()
    if not url.startswith(("http://", "https://")):
        raise SwarmError(f"agent {url!r}: want the agent's API URL, like http://127.0.0.1:7070")
    return url
