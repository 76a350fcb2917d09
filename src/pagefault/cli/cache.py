"""``pagefault cache ls|info|pin|unpin|evict|verify|gc|prefetch``: manage the node cache."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from pagefault.cache import NodeCache, config_path, manage
from pagefault.errors import PagefaultError

from .commands import JsonOpt, QuietOpt, app
from .output import emit_fields, emit_json, fail, local_time, plural, progress_bar, stdout_console

__all__ = ["cache_app"]

cache_app = typer.Typer(
    rich_markup_mode=None,  # plain help: no '<bool>' on every flag
    help="The node cache (RAM tier in /dev/shm, disk tier) in front of remote origins.",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")
T = TypeVar("T")
UriArg = Annotated[str, typer.Argument(help="A remote model URI, as given to `pagefault load`.")]


@cache_app.command("ls")
def ls_command(as_json: JsonOpt = False) -> None:
    """List cached models: size, bytes held per tier, pinned."""
    cache = _open(as_json)
    found = _run(lambda: manage.entries(cache), as_json)
    if as_json:
        emit_json({"models": [dataclasses.asdict(e) for e in found]})
        return
    out = stdout_console()
    if not found:
        out.print(f"no cached models ({_tier_summary(cache)})")
        return
    table = Table()
    for column in ("uri", "bytes", *(t.name for t in cache.tiers), "pinned", "last loaded"):
        table.add_column(column, overflow="fold")
    for e in found:
        held = [f"{e.cached.get(t.name, 0) / max(e.bytes, 1):.0%}" for t in cache.tiers]
        table.add_row(
            e.uri, f"{e.bytes:,}", *held, "yes" if e.pinned else "", local_time(e.updated)
        )
    out.print(table)
    out.print(_tier_summary(cache))


@cache_app.command("info")
def info_command(
    uri: Annotated[str | None, typer.Argument(help="A cached URI (default: the tiers)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the tiers (paths, capacity, use) or one cached model."""
    cache = _open(as_json)
    if uri is not None:
        found = _run(lambda: manage.entry(cache, uri), as_json)
        emit_fields(dataclasses.asdict(found), as_json)
        return
    tiers = _run(lambda: manage.tiers(cache), as_json)
    if as_json:
        emit_json(
            {
                "config": str(config_path()),
                "offline": cache.config.offline,
                "tiers": [dataclasses.asdict(t) for t in tiers],
            }
        )
        return
    out = stdout_console()
    where = config_path()
    out.print(
        f"config file: {where}"
        if where.exists()
        else f"config file: none ({where} absent: defaults apply)"
    )
    for t in tiers:
        pieces = plural(t.pieces, "piece")
        out.print(f"{t.name:>4}: {t.root}  {t.used:,} of {t.capacity:,} bytes ({pieces})")
    out.print(RAM_TIER_NOTE)


@cache_app.command("pin")
def pin_command(uri: UriArg, as_json: JsonOpt = False) -> None:
    """Keep a cached model resident: eviction never removes it."""
    cache = _open(as_json)
    _run(lambda: manage.pin(cache, uri), as_json)
    emit_fields({"uri": uri, "pinned": True}, as_json)


@cache_app.command("unpin")
def unpin_command(uri: UriArg, as_json: JsonOpt = False) -> None:
    """Let eviction remove a model again."""
    cache = _open(as_json)
    _run(lambda: manage.unpin(cache, uri), as_json)
    emit_fields({"uri": uri, "pinned": False}, as_json)


@cache_app.command("evict")
def evict_command(uri: UriArg, as_json: JsonOpt = False) -> None:
    """Remove a model's pieces (those no other cached model shares) and its record."""
    cache = _open(as_json)
    freed = _run(lambda: manage.evict(cache, uri), as_json)
    emit_fields({"uri": uri, "freed_bytes": freed}, as_json)


@cache_app.command("verify")
def verify_command(
    uri: Annotated[str | None, typer.Argument(help="A cached URI (default: everything)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-hash cached pieces; corrupt ones are dropped (exit 1 if any were found)."""
    cache = _open(as_json)
    result = _run(lambda: manage.verify(cache, uri), as_json)
    emit_fields({"checked": result.checked, "corrupt": result.corrupt}, as_json)
    if result.corrupt:
        raise typer.Exit(1)


@cache_app.command("gc")
def gc_command(as_json: JsonOpt = False) -> None:
    """Remove leftovers of killed processes, forget unreferenced files, enforce capacities."""
    cache = _open(as_json)
    report = _run(lambda: manage.gc(cache), as_json)
    emit_fields(dataclasses.asdict(report), as_json)


@cache_app.command("prefetch")
def prefetch_command(
    uri: UriArg,
    pin: Annotated[bool, typer.Option("--pin", help="Also pin it")] = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Warm this node's cache with a model before a rollout (nothing is loaded)."""
    cache = _open(as_json)
    started = time.perf_counter()
    with progress_bar("prefetching", enabled=not (quiet or as_json)) as bar:
        found = _run(lambda: manage.prefetch(cache, uri, on_progress=bar.advance), as_json)
    if pin:
        _run(lambda: manage.pin(cache, uri), as_json)
    payload = dataclasses.asdict(found) | {"seconds": round(time.perf_counter() - started, 3)}
    emit_fields(payload | {"pinned": found.pinned or pin}, as_json)


def _open(as_json: bool) -> NodeCache:
    return _run(NodeCache, as_json)


def _run(action: Callable[[], T], as_json: bool) -> T:
    try:
        return action()
    except PagefaultError as exc:
        fail(exc, as_json=as_json)


RAM_TIER_NOTE = (
    "The RAM tier is shared memory (/dev/shm): it counts against the node's memory until "
    "evicted, and survives restarts. Every remote load and inspect fills it, up to its "
    "capacity (a quarter of /dev/shm by default; PAGEFAULT_CACHE_RAM_CAPACITY=0 turns it off)."
)


def _tier_summary(cache: NodeCache) -> str:
    return "; ".join(
        f"{t.name} tier {t.root}: {t.used:,} of {t.capacity:,} bytes" for t in manage.tiers(cache)
    )
