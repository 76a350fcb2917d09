"""The ``pagefault`` command: load, inspect, synth (the remote verbs live in ``remote``)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pagefault import __version__ as pagefault_version
from pagefault import api  # lazy: torch loads only for commands that load tensors
from pagefault.cache.config import load_config
from pagefault.doctor.bottleneck import explain
from pagefault.errors import PagefaultError
from pagefault.manifest import Manifest
from pagefault.pipeline.stats import LoadStats
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint

from .errors import PagefaultGroup
from .output import console, emit_json, fail, parse_size, plural, progress_bar, stdout_console

__all__ = ["app"]

app = typer.Typer(
    rich_markup_mode=None,  # plain help: no '<bool>' on every flag
    cls=PagefaultGroup,
    help="Move model weights from storage into CPU/GPU memory at the hardware limit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"pagefault {pagefault_version}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Move model weights from storage into CPU/GPU memory at the hardware limit."""


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
PathArg = Annotated[
    str,
    typer.Argument(
        help="A .safetensors file, an index, or a directory; or an s3://, gs://, az://, "
        "http(s)://, hf://ORG/REPO[@REV] URI of one of them or of a prefix."
    ),
]


@app.command()
def load(
    path: PathArg,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N")] = "cpu",
    threads: Annotated[int | None, typer.Option(min=1, help="I/O threads (default: auto)")] = None,
    dtype: Annotated[
        str | None,
        typer.Option(help="Convert floating-point tensors: float16, bfloat16, float32, float64"),
    ] = None,
    mmap: Annotated[
        bool | None, typer.Option("--mmap/--no-mmap", help="CPU: map files (default: auto)")
    ] = None,
    verify: Annotated[
        bool | None,
        typer.Option(
            "--verify/--no-verify",
            help="Check pieces against pagefault.manifest.json (default: remote models)",
        ),
    ] = None,
    cache: Annotated[
        bool | None,
        typer.Option("--cache/--no-cache", help="Remote models: use the node cache (default: on)"),
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Load a model and report bytes, seconds, GB/s and where the time went."""
    try:
        with progress_bar("loading", enabled=not (quiet or as_json)) as bar:
            tensors = api.stream(
                path,
                device,
                dtype=dtype,
                threads=threads,
                mmap=mmap,
                verify=verify,
                cache=cache,
                on_progress=bar.advance,
            )
            bar.set_total(tensors.stats.bytes)
            for count, _ in enumerate(tensors):
                if count % 16 == 0:
                    bar.describe(f"loading ({source_split(tensors.stats.bytes_by_source_now())})")
    except PagefaultError as exc:
        fail(exc, as_json=as_json)
    if as_json:
        emit_json({"path": str(path), **tensors.stats.to_dict()})
    else:
        _print_stats(path, tensors.stats)
        fetched = sum(tensors.stats.bytes_by_source.get(k, 0) for k in ("origin", "peers"))
        if fetched and cache is not False:
            _print_cache_note()


@app.command(name="inspect")
def inspect_command(path: PathArg, as_json: JsonOpt = False) -> None:
    """List tensors (name, dtype, shape, bytes) and totals, reading only the headers."""
    try:
        manifest = api.inspect(path)
    except PagefaultError as exc:
        fail(exc, as_json=as_json)
    if as_json:
        emit_json(_manifest_json(manifest))
        return
    table = Table(title=str(path))
    for column in ("name", "dtype", "shape", "bytes", "file"):
        table.add_column(column, overflow="fold")
    for t in manifest.tensors:
        table.add_row(
            t.name,
            t.dtype.value,
            str(list(t.shape)),
            f"{t.nbytes:,}",
            manifest.files[t.file_index].name,
        )
    out = stdout_console()  # tables go to stdout
    out.print(table)
    out.print(
        f"{plural(len(manifest.tensors), 'tensor')}, {manifest.total_bytes:,} bytes, "
        f"{plural(len(manifest.files), 'file')}, model id {manifest.model_id[:16]}"
    )


@app.command()
def synth(
    directory: Annotated[Path, typer.Argument(help="Where to write the checkpoint.")],
    size: Annotated[str, typer.Option(help="Approximate total size, e.g. 4GiB.")] = "1GiB",
    shards: Annotated[int, typer.Option(help="Number of shards (1 = single file).")] = 2,
    seed: Annotated[int, typer.Option(help="Seed; same seed, same bytes.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Write a deterministic Llama-shaped bf16 checkpoint (for tests and benchmarks)."""
    config = SyntheticConfig(size=parse_size(size), shards=shards, seed=seed)
    show = not as_json and console.is_terminal
    with console.status("writing synthetic checkpoint") if show else nullcontext():
        target = write_synthetic_checkpoint(directory, config)
    manifest = api.inspect(target)
    if as_json:
        emit_json(
            {
                "path": str(target),
                "bytes": manifest.total_bytes,
                "tensors": len(manifest.tensors),
                "files": len(manifest.files),
            }
        )
    else:
        console.print(
            f"wrote {target} ({manifest.total_bytes:,} bytes, "
            f"{plural(len(manifest.tensors), 'tensor')}, {plural(len(manifest.files), 'file')})"
        )


def source_split(by_source: dict[str, int]) -> str:
    """``ram 1.2 GB, peers 3.4 GB``: the sources that delivered anything, cheapest first."""
    parts = [f"{kind} {count / 1e9:.2f} GB" for kind, count in by_source.items() if count]
    return ", ".join(parts) or "nothing yet"


def _print_stats(path: str, stats: LoadStats) -> None:
    out = stdout_console()
    memory = f" in {stats.pages} memory" if stats.pages else ""
    where = f"to {stats.device} ({stats.mode}){memory}"
    out.print(f"loaded {plural(stats.tensors, 'tensor')} from {path} {where}")
    table = Table(
        "bytes", "seconds", "GB/s", "read s", "verify s", "copy s", "stall s", "wait s", "threads"
    )
    table.add_row(
        f"{stats.bytes:,}",
        f"{stats.seconds:.3f}",
        f"{stats.gbps:.2f}",
        f"{stats.read_s:.3f}",
        f"{stats.verify_s:.3f}",
        f"{stats.copy_s:.3f}",
        f"{stats.stall_s:.3f}",
        f"{stats.wait_s:.3f}",
        str(stats.threads),
    )
    out.print(table)
    out.print(f"bytes from: {source_split(stats.bytes_by_source)}")
    out.print(explain(stats.attribution), highlight=False)
    out.print(
        "read/verify/copy/stall: summed over I/O threads; wait: caller waiting for tensors"
        + ("" if stats.verified else "; pieces not verified")
    )


def _print_cache_note() -> None:
    """Where a remote load's bytes stayed: users should know their RAM holds a copy."""
    config = load_config()
    if not config.enabled:
        return
    ram = f"the RAM tier {config.ram_dir} (shared memory) and " if config.ram_dir else ""
    stdout_console().print(
        f"kept in {ram}the disk tier {config.disk_dir} for the next load on this node; "
        "`pagefault cache ls` lists it, PAGEFAULT_CACHE_RAM_CAPACITY=0 keeps RAM free",
        highlight=False,
    )


def _manifest_json(manifest: Manifest) -> dict[str, object]:
    return {
        "model_id": manifest.model_id,
        "bytes": manifest.total_bytes,
        "files": [
            {"name": f.name, "size": f.size, "metadata": dict(f.metadata)} for f in manifest.files
        ],
        "tensors": [
            {
                "name": t.name,
                "dtype": t.dtype.value,
                "shape": list(t.shape),
                "bytes": t.nbytes,
                "file": manifest.files[t.file_index].name,
            }
            for t in manifest.tensors
        ],
    }
