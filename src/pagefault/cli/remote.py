"""``pagefault manifest build``, ``pagefault verify`` and ``pagefault pull``."""

from __future__ import annotations

from typing import Annotated

import typer

from pagefault.api import make_piece_manifest, pull, verify, write_piece_manifest
from pagefault.api.manifests import default_manifest_location
from pagefault.errors import PagefaultError
from pagefault.manifest import DEFAULT_PIECE_SIZE, PIECE_HASHES, SHA256

from .commands import JsonOpt, PathArg, QuietOpt, app
from .output import console, emit_json, fail, parse_size, plural, progress_bar, stdout_console

__all__ = ["manifest_app"]

manifest_app = typer.Typer(
    rich_markup_mode=None,  # plain help: no '<bool>' on every flag
    help="Piece manifests (per-piece digests) that loads verify against.",
)
app.add_typer(manifest_app, name="manifest")
ThreadsOpt = Annotated[int | None, typer.Option(min=1, help="Concurrent reads (default: 16)")]


@manifest_app.command("build")
def build_command(
    source: PathArg,
    out: Annotated[
        str | None,
        typer.Option(help="Local path or URI to write (default: beside the model)"),
    ] = None,
    piece_size: Annotated[str, typer.Option(help="Piece size, a power of two")] = "16MiB",
    piece_hash: Annotated[
        str,
        typer.Option(
            "--hash",
            help="sha256 (also records the swarm's BitTorrent v2 hashes) or blake3 (faster)",
        ),
    ] = SHA256,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Hash every piece of a model and publish pagefault.manifest.json."""
    if piece_hash not in PIECE_HASHES:
        raise typer.BadParameter(f"use one of {', '.join(PIECE_HASHES)}", param_hint="--hash")
    try:
        size = parse_size(piece_size) if piece_size else DEFAULT_PIECE_SIZE
        with progress_bar("hashing", enabled=not (quiet or as_json)) as bar:
            manifest = make_piece_manifest(
                source,
                piece_size=size,
                threads=threads,
                piece_hash=piece_hash,
                on_progress=bar.advance,
                on_total=bar.set_total,
            )
        where = write_piece_manifest(manifest, out or default_manifest_location(source))
    except PagefaultError as exc:
        fail(exc, as_json=as_json)
    pieces = sum(len(f.pieces) for f in manifest.files)
    summary = {
        "manifest": where,
        "manifest_id": manifest.manifest_id,
        "files": len(manifest.files),
        "bytes": manifest.total_bytes,
        "piece_size": manifest.piece_size,
        "hash": manifest.algorithm,
        "pieces": pieces,
    }
    if as_json:
        emit_json(summary)
    else:
        stdout_console().print(
            f"wrote {where}: {plural(len(manifest.files), 'file')}, {manifest.total_bytes:,} "
            f"bytes, {plural(pieces, 'piece')} of {manifest.piece_size:,} bytes"
        )


@app.command(name="verify")
def verify_command(
    source: PathArg, threads: ThreadsOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False
) -> None:
    """Check every piece of a model against its pagefault.manifest.json (exit 1 on mismatch)."""
    try:
        with progress_bar("verifying", enabled=not (quiet or as_json)) as bar:
            report = verify(
                source, threads=threads, on_progress=bar.advance, on_total=bar.set_total
            )
    except PagefaultError as exc:
        fail(exc, as_json=as_json)
    bad = [{"file": name, "piece": index} for name, index in report.bad_pieces]
    if as_json:
        emit_json(
            {
                "source": source,
                "ok": report.ok,
                "files": report.files,
                "bytes": report.bytes,
                "bad_pieces": bad,
            }
        )
    elif report.ok:
        files = plural(report.files, "file")
        stdout_console().print(f"ok: {files}, {report.bytes:,} bytes match")
    else:
        for item in bad:
            console.print(f"[red]mismatch[/red] {item['file']} piece {item['piece']}")
        console.print(f"{plural(len(bad), 'piece')} do not match the manifest")
    if not report.ok:
        raise typer.Exit(1)


@app.command(name="pull")
def pull_command(
    source: PathArg,
    dest: Annotated[str, typer.Argument(help="Local directory to download into")],
    include: Annotated[
        list[str] | None,
        typer.Option(help="Only the other files matching this glob (repeatable), e.g. '*.json'"),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(help="Skip the other files matching this glob (repeatable), e.g. '*.bin'"),
    ] = None,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Download a model directory: the weights with parallel verified ranged reads, then
    its other files (config, tokenizer); atomic, resumable, finished files skipped."""
    try:
        with progress_bar("pulling", enabled=not (quiet or as_json)) as bar:
            result = pull(
                source,
                dest,
                threads=threads,
                include=include or (),
                exclude=exclude or (),
                on_progress=bar.advance,
                on_total=bar.set_total,
            )
    except PagefaultError as exc:
        fail(exc, as_json=as_json)
    payload = {"source": source, **vars(result)}
    if as_json:
        emit_json(payload)
    else:
        rate = result.downloaded / result.seconds / 1e6 if result.seconds else 0.0
        skipped = f", {len(result.skipped)} already there" if result.skipped else ""
        stdout_console().print(
            f"pulled {plural(len(result.files), 'file')} ({result.bytes:,} bytes) into {dest} "
            f"in {result.seconds:.2f} s{skipped}; downloaded {result.downloaded:,} bytes at "
            f"{rate:.0f} MB/s"
            + (", weights verified" if result.verified else ", no manifest to verify against")
        )
