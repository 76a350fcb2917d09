"""What each object-store failure means, for loads and saves alike: the one mapping.

Every exception class obstore defines is listed in ``STORE_ERRORS`` with its meaning
(a test fails when obstore adds one that is not), and ``map_store_errors`` turns it into
pagefault's error for the direction of the transfer: a load's missing object is
``NotFound``, a save's is a ``CheckpointError``; both name the object and the fix.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from obstore import exceptions as obs_errors

from pagefault.errors import CheckpointError, IntegrityError, NotFound, PagefaultError, SourceError

__all__ = [
    "STORE_ERRORS",
    "StoreFailure",
    "classify",
    "first_line",
    "map_store_errors",
    "store_error",
]


class StoreFailure(enum.Enum):
    """What went wrong at the store, independent of the direction of the transfer."""

    MISSING = "not found"
    CHANGED = "changed during the transfer"
    DENIED = "access denied"
    EXISTS = "already exists"
    INVALID = "invalid path or setting"
    UNSUPPORTED = "not supported by this store"
    FAILED = "failed"


STORE_ERRORS: dict[type[Exception], StoreFailure] = {
    obs_errors.NotFoundError: StoreFailure.MISSING,
    obs_errors.PreconditionError: StoreFailure.CHANGED,
    obs_errors.NotModifiedError: StoreFailure.CHANGED,
    obs_errors.PermissionDeniedError: StoreFailure.DENIED,
    obs_errors.UnauthenticatedError: StoreFailure.DENIED,
    obs_errors.AlreadyExistsError: StoreFailure.EXISTS,
    obs_errors.InvalidPathError: StoreFailure.INVALID,
    obs_errors.UnknownConfigurationKeyError: StoreFailure.INVALID,
    obs_errors.NotSupportedError: StoreFailure.UNSUPPORTED,
    obs_errors.JoinError: StoreFailure.FAILED,
    obs_errors.GenericError: StoreFailure.FAILED,
    obs_errors.BaseError: StoreFailure.FAILED,
    FileNotFoundError: StoreFailure.MISSING,  # obstore raises the builtin for some misses
}
# obstore reports some refusals as generic errors carrying the HTTP status line.
_DENIED = ("401 Unauthorized", "403 Forbidden")
_CREDENTIALS_HINT = "check the credentials in the environment (AWS_*, GOOGLE_*, AZURE_*)"
_NO_BUCKET = ("NoSuchBucket", "ContainerNotFound", "bucket does not exist")
# Markers in obstore's debug text (reqwest/hyper error kinds) and what they mean.
_CAUSES = (
    ("ConnectionRefused", "connection refused"),
    ("dns error", "host name not found"),
    ("ConnectionReset", "connection reset by the origin"),
    ("TimedOut", "timed out"),
    ("invalid peer certificate", "TLS certificate not trusted (SSL_CERT_FILE adds a private CA)"),
)


def classify(exc: BaseException) -> StoreFailure:
    """The failure ``exc`` stands for (its most specific class listed in the table)."""
    failure = next(
        (STORE_ERRORS[cls] for cls in type(exc).__mro__ if cls in STORE_ERRORS),
        StoreFailure.FAILED,
    )
    text = str(exc)
    if failure is StoreFailure.FAILED and any(status in text for status in _DENIED):
        return StoreFailure.DENIED
    if failure is StoreFailure.FAILED and ("404 Not Found" in text or _no_bucket(text)):
        return StoreFailure.MISSING  # a listing's 404 arrives as a generic error
    return failure


def _no_bucket(text: str) -> bool:
    return any(marker in text for marker in _NO_BUCKET)


def store_error(exc: BaseException, name: str, *, saving: bool = False) -> PagefaultError:
    """pagefault's error for ``exc`` raised while loading (or ``saving``) ``name``."""
    failure = classify(exc)
    detail = first_line(exc)
    if saving:
        hint = f"; {_CREDENTIALS_HINT}" if failure is StoreFailure.DENIED else ""
        return CheckpointError(f"{name}: {failure.value}{hint}: {detail}")
    if failure is StoreFailure.MISSING:
        if _no_bucket(str(exc)):
            return NotFound(f"{name}: bucket {urlsplit(name).netloc!r} does not exist")
        return NotFound(f"{name}: not found at the origin")
    if failure is StoreFailure.CHANGED:
        return IntegrityError(
            f"{name}: the object changed during the load (its ETag/version no longer matches); "
            "retry to load the new version"
        )
    if failure is StoreFailure.DENIED:
        return SourceError(f"{name}: access denied by the origin; {_CREDENTIALS_HINT}: {detail}")
    return SourceError(f"{name}: {detail}")


@contextmanager
def map_store_errors(name: str, *, saving: bool = False) -> Iterator[None]:
    """Re-raise obstore's exceptions (and the OS's) as pagefault's, naming the object."""
    try:
        yield
    except (obs_errors.BaseError, OSError, ValueError) as exc:
        if isinstance(exc, PagefaultError):
            raise
        raise store_error(exc, name, saving=saving) from exc


def first_line(exc: BaseException) -> str:
    """The message's first line, led by the cause buried in obstore's debug text (a
    refused connection, a DNS failure ...) that the first line never names."""
    full = str(exc)
    text = full.strip().splitlines()
    line = text[0] if text else type(exc).__name__
    cause = next((label for marker, label in _CAUSES if marker in full), None)
    return f"{cause} ({line})" if cause else line
