"""Build, publish and check piece manifests, and pull models: the remote-origin verbs."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import obstore

from pagefault.errors import IntegrityError
from pagefault.manifest import MANIFEST_NAME, PieceManifest
from pagefault.pieces.digest import digest_files
from pagefault.pieces.models import make_piece_manifest, model_files, pull, threads_for
from pagefault.sources import resolve
from pagefault.sources.object_store import is_remote, store_for_uri
from pagefault.sources.remote_dir import RemoteDirectory
from pagefault.sources.store_errors import map_store_errors
from pagefault.system.files import write_atomic

__all__ = ["VerifyReport", "make_piece_manifest", "pull", "verify", "write_piece_manifest"]

PathLike = str | os.PathLike[str]
Progress = Callable[[int], None]


def write_piece_manifest(manifest: PieceManifest, dest: PathLike) -> str:
    """Write ``manifest`` to a local path (atomically) or upload it to a URI; returns where."""
    data = manifest.to_json()
    if is_remote(dest):
        store, key = store_for_uri(str(dest))
        with map_store_errors(str(dest)):
            obstore.put(store, key, data)
    else:
        write_atomic(dest, [data])
    return str(dest)


def default_manifest_location(source: PathLike) -> str:
    """Where a model's piece manifest is published: beside its index or single file."""
    text = os.fspath(source)
    if is_remote(text):
        return RemoteDirectory.split(text)[0].uri + MANIFEST_NAME
    directory = text if os.path.isdir(text) else os.path.dirname(text) or "."
    return os.path.join(directory, MANIFEST_NAME)


@dataclass
class VerifyReport:
    """Result of checking a model against its published manifest."""

    ok: bool
    files: int
    bytes: int
    bad_pieces: list[tuple[str, int]] = field(default_factory=list)


def verify(
    source: PathLike,
    *,
    threads: int | None = None,
    on_progress: Progress | None = None,
    on_total: Progress | None = None,
) -> VerifyReport:
    """Hash every piece of ``source`` and compare with its ``pagefault.manifest.json``."""
    with resolve(source) as model:
        if model.pieces is None:
            raise IntegrityError(
                f"{source}: no {MANIFEST_NAME} beside the model; create one with "
                "`pagefault manifest build`"
            )
        sources, names = model_files(model)
        listed = {f.name for f in model.pieces.files}
        sources = [s for s, n in zip(sources, names, strict=True) if n in listed]
        names = [n for n in names if n in listed]
        if on_total is not None:
            on_total(sum(s.size() for s in sources))
        actual = digest_files(
            sources,
            names,
            piece_size=model.pieces.piece_size,
            threads=threads_for(threads),
            algorithm=model.pieces.algorithm,
            on_progress=on_progress,
        )
        bad = [
            (digest.name, index)
            for digest in actual
            for index, (got, want) in enumerate(
                zip(digest.pieces, model.pieces.file(digest.name).pieces, strict=True)
            )
            if got != want
        ]
    return VerifyReport(not bad, len(actual), sum(d.size for d in actual), bad)
