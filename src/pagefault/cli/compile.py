"""``pagefault compile-cache ls|info|push|pull|rm``: the node's and the fleet's
torch.compile bundles (see ``pagefault.compile_cache``)."""

from __future__ import annotations

import shutil
from typing import Annotated, Any

import typer
from rich.table import Table

from pagefault.compile.bundle import digest_of
from pagefault.compile.stores import (
    STORE_ENV,
    BundleStore,
    DirectoryStore,
    compile_root,
    newest_bundle,
    open_store,
)
from pagefault.errors import ConfigError, IntegrityError, NotFound

from .commands import JsonOpt, app
from .output import emit_fields, emit_json, stdout_console

__all__ = ["compile_app"]

compile_app = typer.Typer(
    rich_markup_mode=None,  # plain help: no '<bool>' on every flag
    help="torch.compile artifacts cached on this node and shared through a store.",
    no_args_is_help=True,
)
app.add_typer(compile_app, name="compile-cache")
KeyArg = Annotated[str, typer.Argument(help="A key, as `ls` lists it (name-<stack hash>)")]
StoreOpt = Annotated[
    str | None, typer.Option(help=f"redis://, file://, s3://, gs://, az:// (env {STORE_ENV})")
]


def _node() -> DirectoryStore:
    return DirectoryStore(compile_root() / "bundles")


def _store(uri: str | None) -> BundleStore:
    store = open_store(uri)
    if store is None:
        raise ConfigError(f"no compile store: pass --store or set {STORE_ENV}")
    return store


@compile_app.command("ls")
def ls_command(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """List the keys the node cache (or ``--store``) holds bundles for."""
    where = _store(store) if store else _node()
    rows = [_describe(where, key) for key in where.list_keys()]
    if as_json:
        emit_json({"store": where.name, "keys": rows})
        return
    out = stdout_console()
    if not rows:
        out.print(f"no compile bundles in {where.name}")
        return
    table = Table("key", "bundle", "bytes", title=f"compile bundles in {where.name}")
    for row in rows:
        table.add_row(row["key"], row["digest"][:16], f"{row['bytes']:,}")
    out.print(table)


@compile_app.command("info")
def info_command(key: KeyArg, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """The newest bundle of ``key`` and the inductor directory built from it."""
    where = _store(store) if store else _node()
    row = _describe(where, key)
    directory = compile_root() / key / "inductor"
    files = [p for p in directory.rglob("*") if p.is_file()] if directory.is_dir() else []
    row |= {"directory": str(directory), "files": len(files)}
    row["directory_bytes"] = sum(p.stat().st_size for p in files)
    emit_fields(row, as_json)


@compile_app.command("push")
def push_command(key: KeyArg, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Copy this node's newest bundle of ``key`` to the shared store."""
    emit_fields(_copy(_node(), _store(store), key), as_json)


@compile_app.command("pull")
def pull_command(key: KeyArg, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Copy the store's newest bundle of ``key`` into this node's cache (checked)."""
    emit_fields(_copy(_store(store), _node(), key), as_json)


@compile_app.command("rm")
def rm_command(key: KeyArg, as_json: JsonOpt = False) -> None:
    """Remove ``key``'s bundles and inductor directory from this node."""
    removed = []
    for path in (compile_root() / "bundles" / key, compile_root() / key):
        if path.exists():
            shutil.rmtree(path)
            removed.append(str(path))
    if not removed:
        raise NotFound(f"compile cache key {key!r}: nothing on this node")
    emit_fields({"key": key, "removed": removed}, as_json)


def _newest(store: BundleStore, key: str) -> tuple[str, bytes]:
    found = newest_bundle(store, key)
    if found is None:
        raise NotFound(f"{store.name}: no compile bundle for {key!r}")
    return found


def _describe(store: BundleStore, key: str) -> dict[str, Any]:
    digest, data = _newest(store, key)
    return {"key": key, "digest": digest, "bytes": len(data)}


def _copy(source: BundleStore, target: BundleStore, key: str) -> dict[str, Any]:
    digest, data = _newest(source, key)
    if digest_of(data) != digest:
        raise IntegrityError(f"{source.name}: the bundle of {key!r} does not match its digest")
    target.put(key, digest, data)
    return {
        "key": key,
        "digest": digest,
        "bytes": len(data),
        "from": source.name,
        "to": target.name,
    }
