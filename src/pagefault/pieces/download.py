"""Download a resolved model into a local directory: parallel, verified, atomic, resumable.

Each file is fetched piece by piece into a hidden partial file (``.NAME.pagefault-part``)
beside a journal (``.NAME.pagefault-journal``) that records, after the data is synced,
which pieces are complete; an interrupted pull resumes from the journal as long as the
object's ETag is unchanged. Nothing gets its final name until every byte is in: shards
are renamed first, then the piece manifest, then the index, which makes the model
loadable.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pagefault.errors import IntegrityError, SinkError
from pagefault.manifest import (
    DEFAULT_PIECE_SIZE,
    MANIFEST_NAME,
    FileDigest,
    piece_count,
    piece_matches,
)
from pagefault.pieces.digest import digest_files
from pagefault.pieces.engine import map_pieces
from pagefault.pieces.pull_record import PullRecord
from pagefault.sources import LocalFileSource, ResolvedModel, Source
from pagefault.system.files import fsync_directory, write_atomic

__all__ = ["PullResult", "pull_model"]

_EXTRA_CHUNK = 16 * 1024 * 1024


@dataclass
class PullResult:
    """What a pull did; ``downloaded`` excludes pieces reused from an interrupted pull."""

    dest: str
    files: list[str] = field(default_factory=list)
    bytes: int = 0
    downloaded: int = 0
    verified: bool = False
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)  # already there: same version, whole


class _PartialFile:
    """One file being downloaded: the partial data file and its journal of done pieces."""

    def __init__(self, dest: Path, name: str, source: Source, piece_size: int) -> None:
        self.name, self.source, self.piece_size = name, source, piece_size
        self.final = dest / name
        self.part = dest / f".{name}.pagefault-part"
        self.journal = dest / f".{name}.pagefault-journal"
        self.identity = {
            "etag": getattr(source, "etag", None),
            "size": source.size(),
            "piece_size": piece_size,
        }
        self.done = self._load_journal()
        self._lock = threading.Lock()
        self._fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(self._fd, source.size())
        self._log = self.journal.open("a")
        if not self.done:
            self._log.truncate(0)
            self._log.write(json.dumps(self.identity) + "\n")
            self._log.flush()

    @property
    def pieces(self) -> int:
        return piece_count(self.source.size(), self.piece_size)

    def _load_journal(self) -> set[int]:
        """Pieces a previous pull completed, if it pulled the same version of this file."""
        try:
            header, *lines = self.journal.read_text().splitlines()
            if json.loads(header) != self.identity or not self.part.exists():
                return set()
            return {int(line) for line in lines if line.strip().isdigit()}
        except (OSError, ValueError):
            return set()

    def write_piece(self, index: int, data: bytearray) -> None:
        os.pwrite(self._fd, data, index * self.piece_size)
        os.fdatasync(self._fd)  # data durable before the journal says it is there
        with self._lock:
            self._log.write(f"{index}\n")
            self._log.flush()
            self.done.add(index)

    def kept_bytes(self) -> int:
        """Bytes an interrupted pull already journaled (re-checked before reuse)."""
        size = self.source.size()
        return sum(min(self.piece_size, size - i * self.piece_size) for i in self.done)

    def read_piece(self, index: int) -> bytes:
        start = index * self.piece_size
        return os.pread(self._fd, min(self.piece_size, self.source.size() - start), start)

    def commit(self) -> None:
        os.fsync(self._fd)
        self.close()
        os.replace(self.part, self.final)
        self.journal.unlink(missing_ok=True)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._log.close()


def pull_model(
    model: ResolvedModel,
    dest: str | os.PathLike[str],
    *,
    threads: int,
    extra: Sequence[tuple[str, Source]] = (),
    on_progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> PullResult:
    """Download every file of ``model``, then the ``extra`` files (configs, tokenizers)
    into ``dest``; see the module docstring. Files a previous pull finished are skipped.

    ``on_total(nbytes)`` is called once, before any transfer, with what is still to
    fetch; ``on_progress`` then counts fetched bytes only (kept pieces and skipped files
    would make a speed readout lie)."""
    started = time.perf_counter()
    target = Path(dest)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SinkError(f"{target}: cannot create the destination: {exc.strerror}") from exc
    record = PullRecord(target)
    piece_size = model.pieces.piece_size if model.pieces else DEFAULT_PIECE_SIZE
    names = [entry.name for entry in model.manifest.files]
    files = list(zip(names, model.sources, strict=True))
    result = PullResult(
        str(target), names, sum(s.size() for s in model.sources), verified=model.pieces is not None
    )
    result.skipped = [
        name
        for name, source in files
        if record.finished(name, source) or _matches_manifest(model, target / name, threads)
    ]
    parts = [
        _PartialFile(target, name, source, piece_size)
        for name, source in files
        if name not in result.skipped
    ]
    if on_total is not None:
        kept = sum(part.kept_bytes() for part in parts)
        on_total(sum(p.source.size() for p in parts) - kept + sum(s.size() for _, s in extra))
    try:
        _fetch_all(model, parts, threads=threads, result=result, on_progress=on_progress)
        for part in parts:
            part.commit()
            record.add(part.name, part.source)
    except IntegrityError as exc:
        raise IntegrityError(
            f"{exc}; the verified part of the download is kept in {target} "
            "(.NAME.pagefault-part and .pagefault-journal): re-run to resume"
        ) from exc
    finally:
        for part in parts:
            part.close()
    _copy_extra(extra, target, record, result, threads=threads, on_progress=on_progress)
    _write_small_files(model, target, result)
    fsync_directory(target)
    result.seconds = time.perf_counter() - started
    return result


def _matches_manifest(model: ResolvedModel, path: Path, threads: int) -> bool:
    """Whether a file already at ``path`` has every piece the published manifest lists
    (for origins that pin no version, where the record cannot tell)."""
    if model.pieces is None or not path.is_file():
        return False
    published = model.pieces.file(path.name)
    if path.stat().st_size != published.size:
        return False
    with LocalFileSource(path) as local:
        (found,) = digest_files(
            [local],
            [path.name],
            piece_size=model.pieces.piece_size,
            threads=threads,
            algorithm=model.pieces.algorithm,
        )
    return found.pieces == published.pieces


def _copy_extra(
    extra: Sequence[tuple[str, Source]],
    target: Path,
    record: PullRecord,
    result: PullResult,
    *,
    threads: int,
    on_progress: Callable[[int], None] | None,
) -> None:
    """Files beside the weights: streamed whole (no manifest covers them; sizes are
    checked), each renamed into place when complete; finished ones are skipped."""
    lock = threading.Lock()

    def copy(item: tuple[str, Source]) -> None:
        name, source = item
        size = source.size()
        if record.finished(name, source):  # the record already says so: nothing to write
            with lock:
                result.skipped.append(name)
        else:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target / name, _chunks(source, size))
            with lock:
                record.add(name, source)
                result.downloaded += size
            if on_progress is not None:
                on_progress(size)
        with lock:
            result.files.append(name)
            result.bytes += size

    map_pieces(copy, extra, threads=threads, name="pull-extra")


def _chunks(source: Source, size: int) -> Iterator[bytes]:
    for offset in range(0, size, _EXTRA_CHUNK):
        data = bytearray(min(_EXTRA_CHUNK, size - offset))
        source.read_into(offset, [memoryview(data)])
        yield bytes(data)


def _fetch_all(
    model: ResolvedModel,
    parts: list[_PartialFile],
    *,
    threads: int,
    result: PullResult,
    on_progress: Callable[[int], None] | None,
) -> None:
    digests = [model.pieces.file(p.name) if model.pieces else None for p in parts]
    jobs = [(p, d, i) for p, d in zip(parts, digests, strict=True) for i in range(p.pieces)]
    lock = threading.Lock()

    def fetch(job: tuple[_PartialFile, FileDigest | None, int]) -> None:
        part, digest, index = job
        reused = index in part.done and _matches(digest, index, part.read_piece(index))
        if not reused:
            start = index * part.piece_size
            data = bytearray(min(part.piece_size, part.source.size() - start))
            part.source.read_into(start, [memoryview(data)])
            if digest is not None and not _matches(digest, index, data):
                raise IntegrityError(
                    f"{part.source.name}: piece {index} does not match {MANIFEST_NAME}"
                )
            part.write_piece(index, data)
            with lock:
                result.downloaded += len(data)
            if on_progress is not None:
                on_progress(len(data))

    map_pieces(fetch, jobs, threads=threads, name="pull")


def _matches(digest: FileDigest | None, index: int, data: bytes | bytearray) -> bool:
    return digest is None or piece_matches([data], digest.pieces[index])


def _write_small_files(model: ResolvedModel, target: Path, result: PullResult) -> None:
    """The manifest, then the index: the index's rename is what makes the model loadable."""
    if model.pieces is not None:
        write_atomic(target / MANIFEST_NAME, [model.pieces.to_json()])
        result.files.append(MANIFEST_NAME)
    if model.index is not None:
        data = bytearray(model.index.size())  # the bytes verified while resolving
        model.index.read_into(0, [memoryview(data)])
        write_atomic(target / model.index.name, [bytes(data)])
        result.files.append(model.index.name)
        result.bytes += len(data)
