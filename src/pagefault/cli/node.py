"""``pagefault doctor`` and ``pagefault pool``: what this node can do, and its
reserved huge-page pool."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pagefault.doctor.diagnosis import Diagnosis, diagnose
from pagefault.errors import ConfigError
from pagefault.system.hugetlb import pool_nodes, pool_page_size, pool_room, resize_pool

from .commands import JsonOpt, QuietOpt, app
from .output import console, emit_json, fail, parse_size, stdout_console

__all__ = ["pool_app"]

pool_app = typer.Typer(
    rich_markup_mode=None,  # plain help: no '<bool>' on every flag
    help="The node's reserved huge-page pool, which private loads fault in fastest.",
    no_args_is_help=True,
)
app.add_typer(pool_app, name="pool")

# figure name -> how a person reads it
_LIMITS = {
    "hot_read": "read of page-cached bytes (the read limit)",
    "fresh:small-pages": "into fresh 4 KiB pages",
    "fresh:huge-pages": "into fresh transparent huge pages",
    "fresh:hugetlb-pool": "into the reserved pool",
    "memcpy": "memcpy, one thread",
    "shm_write": "write to /dev/shm",
    "sha256": "SHA-256, one thread",
    "blake3": "BLAKE3, one thread",
}


_PATH_FIGURES = {
    "cold_buffered": "cold, buffered",
    "direct": "cold, O_DIRECT",
    "hot_read": "hot, into faulted memory",
    "fresh:small-pages": "hot, into fresh 4 KiB pages",
    "fresh:huge-pages": "hot, into fresh THP",
    "fresh:hugetlb-pool": "hot, into the pool",
}


@app.command()
def doctor(
    path: Annotated[
        Path | None, typer.Option(help="Also read this model directory cold (buffered, O_DIRECT)")
    ] = None,
    uri: Annotated[
        str | None, typer.Option(help="Also time range reads of this remote model: 1 vs 8 streams")
    ] = None,
    refresh: Annotated[
        bool, typer.Option(help="Measure again (figures are kept per boot)")
    ] = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Measure this node as the benchmarks do and say what bounds a load here."""
    if path is not None and not path.exists():
        fail(ConfigError(f"--path {path}: no such file or directory"), as_json=as_json)
    show = not (quiet or as_json) and console.is_terminal
    status_line = console.status("measuring this node", spinner="dots") if show else None
    with status_line or nullcontext():

        def progress(what: str) -> None:
            if status_line is not None:
                status_line.update(what)

        found = diagnose(path=path, uri=uri, refresh=refresh, progress=progress)
    if as_json:
        emit_json(found.to_dict())
        return
    _print(found)


def _print(found: Diagnosis) -> None:
    out = stdout_console()
    table = Table(title="this node (GB/s)", title_justify="left")
    table.add_column("figure")
    table.add_column("GB/s", justify="right")
    for key, label in _LIMITS.items():
        table.add_row(label, _rate(found.limits.get(key)))
    for name, figures in found.paths.items():
        for key, label in _PATH_FIGURES.items():
            if key in figures:
                table.add_row(f"{name}: {label}", _rate(figures[key]))
    for name, figures in found.uris.items():
        table.add_row(f"{name}: one stream", _rate(figures.get("one_stream")))
        table.add_row(f"{name}: 8 streams", _rate(figures.get("parallel")))
    if found.gpu is not None:
        for key in ("h2d_pinned_gbps", "h2d_pageable_gbps"):
            table.add_row(f"{found.gpu['name']}: {key[4:-5]} host-to-device", _rate(found.gpu[key]))
    out.print(table)
    facts = found.facts
    pool = facts["pool"]
    out.print(
        f"{facts['cpus']} CPUs, {facts['memory_bytes'] / 2**30:.1f} GiB, "
        f"{len(facts['numa_nodes']) or 1} NUMA node(s), THP {facts['transparent_huge_pages']}, "
        f"pool {pool['total_bytes'] / 2**30:.1f} GiB ({pool['usable_bytes'] / 2**30:.1f} usable), "
        f"GPUDirect Storage {facts['gpudirect_storage']}",
        highlight=False,
    )
    for line in found.advice:
        out.print(f"- {line}", highlight=False)
    out.print(
        "figures kept for this boot" + (" (read from the record)" if found.cached else ""),
        style="dim",
    )


def _rate(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "-"


@pool_app.command("status")
def pool_status(as_json: JsonOpt = False) -> None:
    """The pool per NUMA node, and what this process could fault in."""
    nodes = pool_nodes()
    payload = {"page_bytes": pool_page_size(), "usable_bytes": pool_room(), "nodes": nodes}
    if as_json:
        emit_json(payload)
        return
    out = stdout_console()
    for node in nodes:
        out.print(
            f"node {node['node']}: {node['total_bytes']:,} bytes reserved, "
            f"{node['free_bytes']:,} free",
            highlight=False,
        )
    out.print(f"usable by this process: {payload['usable_bytes']:,} bytes", highlight=False)


@pool_app.command("reserve")
def pool_reserve(
    size: Annotated[str, typer.Argument(help="The pool's size, e.g. 8GiB (whole pages)")],
    node: Annotated[int | None, typer.Option(help="Only this NUMA node's share")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Reserve huge pages (needs root; on Kubernetes, the kubelet's hugepages-2Mi)."""
    _resize(parse_size(size), node, as_json)


@pool_app.command("release")
def pool_release(
    node: Annotated[int | None, typer.Option(help="Only this NUMA node's share")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Give the pool back to the kernel (pages still mapped return when unmapped)."""
    _resize(0, node, as_json)


def _resize(nbytes: int, node: int | None, as_json: bool) -> None:
    try:
        held = resize_pool(nbytes, node)
    except OSError as exc:
        fail(ConfigError(f"cannot resize the huge-page pool: {exc}"), as_json=as_json)
    payload = {"asked_bytes": nbytes, "reserved_bytes": held, "node": node}
    if as_json:
        emit_json(payload)
        return
    short = " (memory is fragmented: the kernel found fewer pages)" if held < nbytes else ""
    stdout_console().print(f"pool: {held:,} bytes reserved{short}", highlight=False)
