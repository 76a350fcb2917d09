"""What a destination directory already holds, so a second pull skips finished files.

After each file lands, its origin identity (size plus ETag/version, or size and mtime
for a local source) is recorded in ``.pagefault-pull.json`` beside it. A later pull of
the same model skips a file whose recorded identity still matches the origin and whose
size on disk is unchanged, as ``hf download`` and ``s5cmd sync`` do. An origin that pins
nothing (no ETag, no version: a plain static server) cannot say whether a file changed;
the caller then checks the file against the piece manifest, or fetches it again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pagefault.sources import Source
from pagefault.system.files import write_atomic

__all__ = ["RECORD_NAME", "PullRecord", "identity"]

RECORD_NAME = ".pagefault-pull.json"


def identity(source: Source) -> dict[str, Any]:
    """What names this version of a file: size and whatever the origin pins it by."""
    meta = getattr(source, "meta", None)
    if meta is not None:
        pins = {"etag": meta["e_tag"], "version": meta["version"]}
        return {"size": source.size(), **{k: v for k, v in pins.items() if v is not None}}
    try:
        stat = os.stat(source.name)
    except OSError:
        return {"size": source.size()}
    return {"size": stat.st_size, "modified": stat.st_mtime_ns}


class PullRecord:
    """The identities of the files a pull finished in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self._path = directory / RECORD_NAME
        try:
            loaded = json.loads(self._path.read_text())
        except (OSError, ValueError):
            loaded = {}
        self._files: dict[str, Any] = loaded if isinstance(loaded, dict) else {}

    def finished(self, name: str, source: Source) -> bool:
        """Whether ``name`` is on disk, whole, and the same version ``source`` serves."""
        wanted = identity(source)
        if len(wanted) < 2:  # size alone does not tell two versions apart
            return False
        try:
            on_disk = (self._path.parent / name).stat().st_size
        except OSError:
            return False
        return on_disk == wanted["size"] and self._files.get(name) == wanted

    def add(self, name: str, source: Source) -> None:
        self._files[name] = identity(source)
        write_atomic(self._path, [json.dumps(self._files, indent=1).encode()], durable=False)
