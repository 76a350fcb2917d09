"""``pagefault agent``, ``pagefault coordinator`` and ``pagefault swarm status|fetch``.

The agent's, coordinator's and agent client's modules (libtorrent, Redis, pydantic:
~0.3 s) are imported by their commands, not here: every ``pagefault`` command imports
this module.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pagefault.cache import load_config
from pagefault.errors import PagefaultError
from pagefault.swarm.config import AgentConfig
from pagefault.swarm.jsonhttp import call
from pagefault.swarm.protocol import HEALTH_PATH, MEMBER_TTL_S
from pagefault.swarm.simulate import DEFAULT_QUEUEING, SimConfig, simulate
from pagefault.swarm.sockets import NOTSENT_LOWAT
from pagefault.swarm.topology import DEFAULT_STRIPES, MAX_STRIPES

from .commands import JsonOpt, QuietOpt, app
from .output import console, emit_json, fail, parse_size, progress_bar, stdout_console

__all__ = ["swarm_app"]

swarm_app = typer.Typer(
    rich_markup_mode=None,  # plain help: no '<bool>' on every flag
    help="Fleet-wide P2P distribution (status, fetch).",
    no_args_is_help=True,
)
app.add_typer(swarm_app, name="swarm")
TokenOpt = Annotated[
    str | None,
    typer.Option(envvar="PAGEFAULT_SWARM_TOKEN", help="Swarm token (env PAGEFAULT_SWARM_TOKEN)"),
]
CoordinatorOpt = Annotated[
    str | None,
    typer.Option(envvar="PAGEFAULT_COORDINATOR", help="Coordinator URL, e.g. http://10.0.0.2:7171"),
]
AgentOpt = Annotated[
    str, typer.Option(envvar="PAGEFAULT_AGENT", help="The node agent's local API URL")
]


@app.command("coordinator")
def coordinator_command(
    listen: Annotated[str, typer.Option(help="host:port to serve on")] = "0.0.0.0:7171",
    redis_url: Annotated[
        str, typer.Option("--redis", help="Redis URL")
    ] = "redis://127.0.0.1:6379/0",
    ca_dir: Annotated[
        Path, typer.Option(help="Where the swarm CA lives (made on first run)")
    ] = Path("/var/lib/pagefault/ca"),
    token: TokenOpt = None,
    stripes: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_STRIPES,
            help="1: one forwarding chain; 2: two interleaved trees over piece stripes",
        ),
    ] = DEFAULT_STRIPES,
) -> None:
    """Serve peer discovery, chain/tree placement and origin policy (state in Redis)."""
    if not token:
        raise typer.BadParameter("a swarm token is required (--token or PAGEFAULT_SWARM_TOKEN)")
    import redis  # noqa: PLC0415 - see the module's docstring

    from pagefault.swarm.coordinator import Coordinator  # noqa: PLC0415
    from pagefault.swarm.credentials import SwarmCA  # noqa: PLC0415
    from pagefault.swarm.state import SwarmState  # noqa: PLC0415

    _log_to_stderr()
    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    state = SwarmState(client, ttl_s=MEMBER_TTL_S)
    coordinator = Coordinator(state, SwarmCA.load_or_create(ca_dir), token, stripes=stripes)
    server = coordinator.server(listen)
    server.start()
    logging.getLogger("pagefault.coordinator").info("coordinator on %s", server.address)
    _serve_until_signal()
    server.stop()


@app.command("agent")
def agent_command(
    listen: Annotated[str, typer.Option(help="ip:port peers reach this node on (0 = any)")],
    node: Annotated[str | None, typer.Option(help="Node name (default: hostname)")] = None,
    api: Annotated[str, typer.Option(help="Local API host:port")] = "127.0.0.1:7070",
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where libtorrent keeps the files it seeds from (default: swarm/ under the"
            " node cache's disk dir); admitted pieces also go into the node cache"
        ),
    ] = None,
    coordinator: CoordinatorOpt = None,
    token: TokenOpt = None,
    zone: Annotated[str, typer.Option(help="Rack/zone label (placement groups a zone)")] = "",
    link_mbit: Annotated[
        float,
        typer.Option(
            min=0,
            help="This node's link rate in Mbit/s; nodes under half the fastest declared"
            " rate feed only each other, behind the fast ones (0: not declared)",
        ),
    ] = 0.0,
    stall: Annotated[float, typer.Option(help="Seconds without a piece before the origin")] = 10.0,
    origin_threads: Annotated[int, typer.Option(help="Concurrent origin reads")] = 4,
    notsent_lowat: Annotated[
        int,
        typer.Option(
            help="Cap on unsent bytes per TCP socket (net.ipv4.tcp_notsent_lowat of this"
            " network namespace), lowered at start if higher; 0 leaves it alone"
        ),
    ] = NOTSENT_LOWAT,
) -> None:
    """Run the node agent: serve models to peers and to this node's processes."""
    from pagefault.swarm.agent import Agent  # noqa: PLC0415 - see the module's docstring

    _log_to_stderr()
    try:
        cache_config = load_config()
    except PagefaultError as exc:
        fail(exc, as_json=False)
    config = AgentConfig(
        node=node or os.uname().nodename,
        listen=listen,
        api=api,
        data_dir=data_dir or cache_config.resolved().disk_dir / "swarm",
        coordinator=coordinator.rstrip("/") if coordinator else None,
        token=token,
        zone=zone,
        link_mbit=link_mbit,
        stall_s=stall,
        origin_threads=origin_threads,
        notsent_lowat=notsent_lowat,
    )
    agent = Agent(config, cache_config).start()
    _serve_until_signal()
    agent.stop()


@swarm_app.command("fetch")
def fetch_command(
    uri: Annotated[str, typer.Argument(help="Model URI")],
    agent: AgentOpt = "http://127.0.0.1:7070",
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0, help="give up after this many seconds (default: never)"),
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Have the node agent fetch a model into the node cache; wait until every piece is here.

    Afterwards any process on the node loads it (``pagefault load URI``) with no origin
    and no peer bytes. With ``--timeout`` it fails (exit 2) if the model is not complete by then
    (the agent carries on)."""
    from pagefault.swarm.client import AgentClient  # noqa: PLC0415 - see the docstring

    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        client = AgentClient(agent)
        model = client.open(uri, timeout=timeout)
        total = sum(f.size for f in model.files)
        with progress_bar("swarm", enabled=not (quiet or as_json)) as bar:
            bar.set_total(total)
            done = 0
            for update in client.follow(model, interval=0.2):
                model = update
                now = min(total, model.have * (model.piece_size or 0))  # pieces only add up
                bar.advance(now - done)
                done = now
                late = deadline is not None and time.monotonic() > deadline
                if late and model.state not in ("complete", "failed"):
                    raise PagefaultError(
                        f"{uri}: not complete after {timeout:g} s ({model.have} of "
                        f"{model.pieces} pieces on the node; the agent carries on)"
                    )
    except PagefaultError as exc:
        fail(exc, as_json=as_json)
    if model.state == "failed":
        fail(PagefaultError(f"{uri}: {model.error}"), as_json=as_json)
    if as_json:
        emit_json(model.model_dump())
    else:
        stdout_console().print(
            f"{uri}: {total:,} bytes in {model.complete_s or 0.0:.2f} s "
            f"(origin {model.from_origin:,}, peers {model.from_peers:,}, "
            f"uploaded {model.uploaded:,})"
        )
        for reason in model.reasons:  # why the swarm did not (fully) serve this model
            console.print(f"[yellow]note[/yellow]: {reason}", highlight=False, soft_wrap=True)
        stdout_console().print(
            f"in the node cache ({model.cache_dir}): load it with `pagefault load {uri}`"
            if model.cache_dir
            else f"not in the node cache ({'; '.join(model.reasons)}); seeding from "
            f"{model.save_path}"
        )


@swarm_app.command("simulate")
def simulate_command(
    nodes: Annotated[int, typer.Option("--nodes", help="fleet size")],
    link_mbit: Annotated[float, typer.Option("--link-mbit", help="each node's link, both ways")],
    size: Annotated[str, typer.Option("--size", help="model bytes (e.g. 48MiB)")],
    piece_size: Annotated[str, typer.Option("--piece-size", help="piece bytes")] = "1MiB",
    topology: Annotated[str, typer.Option("--topology", help="chain or two-trees")] = "chain",
    origin_mbit: Annotated[
        float | None, typer.Option("--origin-mbit", help="default: the link rate")
    ] = None,
    slow_fraction: Annotated[float, typer.Option("--slow-fraction")] = 0.0,
    slow_mbit: Annotated[float | None, typer.Option("--slow-mbit")] = None,
    killed: Annotated[float, typer.Option("--fail", help="share of nodes killed")] = 0.0,
    queueing: Annotated[
        str, typer.Option("--queueing", help="requests-first, small-first or fifo")
    ] = DEFAULT_QUEUEING,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Predict a swarm transfer with the coordinator's own placement (no network needed)."""
    try:
        config = SimConfig(
            nodes=nodes,
            link_mbit=link_mbit,
            size=parse_size(size),
            piece_size=parse_size(piece_size),
            topology=topology,
            origin_mbit=origin_mbit,
            slow_fraction=slow_fraction,
            slow_mbit=slow_mbit,
            fail=killed,
            queueing=queueing,
            seed=seed,
        )
        result = simulate(config)
    except PagefaultError as exc:
        fail(exc, as_json=as_json)
    if as_json:
        emit_json(result.to_dict())
        return
    stdout_console().print(
        f"{nodes} nodes, {topology}: {result.seconds:.2f} s "
        f"({result.seconds / result.floor_seconds:.2f}x the {result.floor_seconds:.2f} s floor); "
        f"origin egress {result.origin_egress:.3f}x, max upload {result.max_upload:.2f}x"
    )


@swarm_app.command("health")
def health_command(coordinator: CoordinatorOpt = None, as_json: JsonOpt = False) -> None:
    """Whether the coordinator and its store answer (exit 2 with the store's error if not)."""
    base = _required(coordinator)
    try:
        answer = call(base + HEALTH_PATH, timeout=5.0)
    except PagefaultError as exc:
        fail(exc, as_json=as_json)
    if as_json:
        emit_json(answer)
    else:
        stdout_console().print(f"{base}: healthy (its store answers)")


@swarm_app.command("status")
def status_command(
    coordinator: CoordinatorOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Every swarm the coordinator knows: nodes, who feeds each stripe, bytes and ratios."""
    base = _required(coordinator)
    try:
        swarms = [
            call(f"{base}/v1/swarms/{s}", token=token)
            for s in call(f"{base}/v1/swarms", token=token)["swarms"]
        ]
    except PagefaultError as exc:
        fail(exc, as_json=as_json)
    if as_json:
        emit_json({"swarms": swarms})
        return
    for swarm in swarms:
        table = Table(title=f"swarm {swarm['swarm']}")
        columns = ("#", "node", "fed by (per stripe)", "have", "origin", "peers", "uploaded")
        for column in (*columns, "ratio"):
            table.add_column(column)
        for n in swarm["nodes"]:
            table.add_row(*_status_row(n))
        stdout_console().print(table)
        if swarm["bad"]:
            stdout_console().print(f"excluded for corrupt pieces: {', '.join(swarm['bad'])}")


def _required(coordinator: str | None) -> str:
    if not coordinator:
        raise typer.BadParameter("--coordinator (or PAGEFAULT_COORDINATOR) is required")
    return coordinator.rstrip("/")


def _status_row(node: dict[str, Any]) -> list[str]:
    received = (node.get("from_origin") or 0) + (node.get("from_peers") or 0)
    ratio = (node.get("uploaded") or 0) / received if received else 0.0
    return [
        str(node["position"]),
        node["node"],
        ", ".join(up or "(origin)" for up in node.get("upstreams") or []),
        f"{node.get('have')}/{node.get('pieces')}",
        f"{node.get('from_origin') or 0:,}",
        f"{node.get('from_peers') or 0:,}",
        f"{node.get('uploaded') or 0:,}",
        f"{ratio:.2f}",
    ]


def _log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _serve_until_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
