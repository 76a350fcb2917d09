"""A compile cache directory as one content-addressed file, and back, safely.

The bundle is a deterministic tar (sorted names, no owners, no times) of the regular
files under the directory, so the same artifacts give the same SHA-256 wherever they
were built, and a bundle's name is its digest. Unpacking refuses anything a hostile
bundle could use to write outside the directory: absolute names, ``..``, links,
devices; a bundle whose bytes do not match its digest is never opened.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path, PurePosixPath

from pagefault.errors import IntegrityError

__all__ = ["digest_of", "pack", "unpack"]

# Files inductor writes while it works, never artifacts.
_SKIPPED_SUFFIXES = (".lock", ".tmp")


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack(directory: Path, *, leave_out: frozenset[str] = frozenset()) -> bytes:
    """Every regular file under ``directory`` (but the relative names in ``leave_out``)
    as a deterministic tar."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in directory.rglob("*") if p.is_file() and not p.is_symlink()):
            relative = path.relative_to(directory).as_posix()
            if relative.endswith(_SKIPPED_SUFFIXES) or "/." in f"/{relative}":
                continue
            if relative in leave_out:
                continue
            data = path.read_bytes()
            info = tarfile.TarInfo(relative)
            info.size, info.mode, info.mtime = len(data), path.stat().st_mode & 0o755, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def unpack(data: bytes, digest: str, directory: Path, *, what: str) -> int:
    """Check ``data`` against ``digest``, then write its files under ``directory``; the
    number of files. Files already there are kept (they are the same artifacts)."""
    if digest_of(data) != digest:
        raise IntegrityError(f"{what}: bundle bytes do not match their digest {digest[:16]}")
    count = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for member in tar.getmembers():
            target = _checked_target(member, directory, what)
            if target.exists():
                continue
            source = tar.extractfile(member)
            assert source is not None  # a regular file, checked above
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f".{target.name}.pagefault-unpack")
            temp.write_bytes(source.read())
            temp.chmod(member.mode & 0o755 | 0o600)
            temp.replace(target)
            count += 1
    return count


def _checked_target(member: tarfile.TarInfo, directory: Path, what: str) -> Path:
    name = PurePosixPath(member.name)
    if not member.isfile() or name.is_absolute() or ".." in name.parts or not name.parts:
        raise IntegrityError(f"{what}: refusing bundle entry {member.name!r}")
    return directory.joinpath(*name.parts)
