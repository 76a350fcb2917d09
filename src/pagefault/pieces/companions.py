"""The rest of a model directory: configs, tokenizers, vocabularies beside the weights.

``from_pretrained(dir)`` needs ``config.json`` and the tokenizer files as much as the
shards, so a pull of a directory (a local one, a bucket prefix, an HTTP path with a
listing) brings every plain file in it, as ``hf download`` and ``s5cmd sync`` do.
``include``/``exclude`` are shell globs on the path relative to the directory
(``*.json`` matches ``1_Pooling/config.json`` too). Sub-directories come along
(sentence-transformers keeps ``1_Pooling/`` there); hidden files and pagefault's own
partial files stay behind; every component of a name from the network passes the same
plain-name rule as shard names before it reaches the filesystem.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from pagefault.formats.index import validate_relative_path
from pagefault.sources import LocalFileSource, Source
from pagefault.sources.object_store import is_remote, local_path
from pagefault.sources.remote_dir import RemoteDirectory

__all__ = ["companion_files", "selected"]

_Opener = Callable[[str], Source]


def selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether ``name`` passes the globs: any ``include`` (all when none), no ``exclude``."""
    if include and not any(fnmatch.fnmatchcase(name, pattern) for pattern in include):
        return False
    return not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)


def companion_files(
    source: str | os.PathLike[str],
    *,
    taken: set[str],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    avoid: Path | None = None,
) -> list[tuple[str, Source]]:
    """``(name, source)`` of each other file in the directory ``source`` names.

    Nothing when ``source`` names a single file: the user asked for that file's model.
    ``avoid``: a local directory left out (the pull's destination, when it lies inside
    the source).
    """
    names, opener = _listing(source, avoid)
    chosen = []
    for name in names:
        parts = name.split("/")
        if name in taken or any(p.startswith(".") for p in parts):
            continue
        if not selected(name, include, exclude):
            continue
        validate_relative_path(name, where=str(source))  # before any filesystem use
        chosen.append((name, opener(name)))
    return chosen


def _listing(source: str | os.PathLike[str], avoid: Path | None) -> tuple[list[str], _Opener]:
    if is_remote(source):
        directory, name = RemoteDirectory.split(str(source))
        if name:
            return [], _no_opener
        return directory.list_tree(), lambda n: directory.source(n, any_suffix=True)
    path = local_path(source)
    if not path.is_dir():
        return [], _no_opener
    skipped = avoid.resolve() if avoid is not None else None
    names = sorted(
        entry.relative_to(path).as_posix()
        for entry in path.rglob("*")
        if entry.is_file()
        and not entry.is_symlink()
        and (skipped is None or not entry.resolve().is_relative_to(skipped))
    )
    return names, lambda n: LocalFileSource(path / n)


def _no_opener(name: str) -> Source:
    raise AssertionError(f"nothing to open: {name}")
