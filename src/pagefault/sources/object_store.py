"""Object stores and HTTP origins through obstore: one store per URI, errors mapped in one place.

Credentials come from each cloud's standard environment (obstore reads ``AWS_*``,
``GOOGLE_*``, ``AZURE_*``); pagefault never takes them as arguments and never logs
them. ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT``) selects an S3-compatible endpoint,
addressed path-style; a plain ``http://`` endpoint is allowed automatically. A private
CA (an internal HTTPS origin or object store) is trusted through ``SSL_CERT_FILE`` or
``AWS_CA_BUNDLE`` (a PEM file), in addition to the system roots. ``STORAGE_EMULATOR_HOST``
(as Google's own clients read it) points ``gs://`` at a GCS emulator, unauthenticated;
``AZURE_STORAGE_USE_EMULATOR=true`` (with ``AZURITE_BLOB_STORAGE_URL``) does the same for
``az://`` through obstore itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from obstore import exceptions as obs_errors
from obstore.store import AzureStore, GCSStore, HTTPStore, S3Store

from pagefault.errors import IntegrityError, NotFound, SourceError

if TYPE_CHECKING:
    from obstore.store import ClientConfig, GCSConfig, ObjectStore, RetryConfig

__all__ = ["REMOTE_SCHEMES", "is_remote", "map_store_errors", "store_for_uri"]

REMOTE_SCHEMES = ("http", "https", "s3", "gs", "az")
# obstore retries requests (connect errors, 5xx, 429) before any body byte arrives; the
# source itself resumes bodies that break mid-way (see RemoteSource).
_RETRY: RetryConfig = {
    "max_retries": 4,
    "backoff": {"init_backoff": timedelta(milliseconds=50), "max_backoff": timedelta(seconds=2)},
    "retry_timeout": timedelta(seconds=60),
}


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """True for URIs pagefault fetches over the network (``s3://``, ``https://`` ...)."""
    return isinstance(uri, str) and urlsplit(uri).scheme in REMOTE_SCHEMES


def store_for_uri(uri: str) -> tuple[ObjectStore, str]:
    """A store rooted at the bucket (or HTTP host) of ``uri``, and the key of ``uri`` in it."""
    parts = urlsplit(uri)
    if parts.scheme not in REMOTE_SCHEMES or not parts.netloc:
        raise NotFound(f"{uri}: not a remote URI (want one of {', '.join(REMOTE_SCHEMES)}://)")
    key = parts.path.lstrip("/")
    if parts.scheme in ("http", "https"):
        return _http_store(f"{parts.scheme}://{parts.netloc}"), key
    return _bucket_store(parts.scheme, parts.netloc), key


def _client_options(*, allow_http: bool) -> ClientConfig:
    options: ClientConfig = {
        "allow_http": allow_http,
        "connect_timeout": timedelta(seconds=10),
        "pool_idle_timeout": timedelta(seconds=30),
        # A stalled body fails within this and is resumed; a slow but moving one is fine.
        "read_timeout": timedelta(seconds=30),
        "timeout": timedelta(hours=1),
    }
    bundle = os.environ.get("SSL_CERT_FILE") or os.environ.get("AWS_CA_BUNDLE")
    if bundle:
        try:
            options["root_certificate"] = Path(bundle).read_bytes()
        except OSError as exc:
            raise SourceError(f"{bundle}: cannot read the CA certificate: {exc.strerror}") from exc
    return options


def _http_store(root: str) -> ObjectStore:
    options = _client_options(allow_http=root.startswith("http://"))
    return HTTPStore.from_url(root, client_options=options, retry_config=_RETRY)


def _bucket_store(scheme: str, bucket: str) -> ObjectStore:
    if scheme == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT")
        config: dict[str, Any] = {"endpoint": endpoint} if endpoint else {}
        options = _client_options(allow_http=bool(endpoint and endpoint.startswith("http://")))
        return S3Store(bucket, config=config, client_options=options, retry_config=_RETRY)  # type: ignore[arg-type]
    if scheme == "gs":
        return _gcs_store(bucket)
    # obstore's Azure emulator mode (AZURE_STORAGE_USE_EMULATOR) allows http by itself.
    options = _client_options(allow_http=False)
    return AzureStore(bucket, client_options=options, retry_config=_RETRY)


def _gcs_store(bucket: str) -> ObjectStore:
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if not emulator:
        options = _client_options(allow_http=False)
        return GCSStore(bucket, client_options=options, retry_config=_RETRY)
    # An emulator takes no credentials; object_store reaches a custom GCS endpoint only
    # through a service-account key naming it, with OAuth off.
    base = (emulator if "://" in emulator else f"http://{emulator}").rstrip("/")
    key = {
        "gcs_base_url": base,
        "disable_oauth": True,
        **dict.fromkeys(("client_email", "private_key", "private_key_id"), ""),
    }
    options = _client_options(allow_http=base.startswith("http://"))
    config: GCSConfig = {"service_account_key": json.dumps(key)}
    try:
        return GCSStore(bucket, config=config, client_options=options, retry_config=_RETRY)
    except obs_errors.BaseError as exc:  # e.g. GOOGLE_SERVICE_ACCOUNT set as well
        raise SourceError(
            f"gs://{bucket}: STORAGE_EMULATOR_HOST={emulator} cannot be combined with the "
            f"GOOGLE_* credentials in the environment: {_first_line(exc)}"
        ) from exc


@contextmanager
def map_store_errors(name: str) -> Iterator[None]:
    """Re-raise obstore's exceptions as pagefault's, naming the object (the one place)."""
    try:
        yield
    except (obs_errors.NotFoundError, FileNotFoundError) as exc:
        raise NotFound(f"{name}: not found at the origin") from exc
    except obs_errors.PreconditionError as exc:
        raise IntegrityError(
            f"{name}: the object changed during the load (its ETag/version no longer matches); "
            "retry to load the new version"
        ) from exc
    except (obs_errors.PermissionDeniedError, obs_errors.UnauthenticatedError) as exc:
        raise SourceError(
            f"{name}: access denied by the origin; check the credentials in the environment "
            f"(AWS_*, GOOGLE_*, AZURE_*): {_first_line(exc)}"
        ) from exc
    except (obs_errors.BaseError, OSError, ValueError) as exc:
        denied = any(status in str(exc) for status in _DENIED)
        hint = "access denied; check the credentials in the environment: " if denied else ""
        raise SourceError(f"{name}: {hint}{_first_line(exc)}") from exc


_DENIED = ("401 Unauthorized", "403 Forbidden")  # obstore reports some of these as generic


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
