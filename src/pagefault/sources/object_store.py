"""Object stores and HTTP origins through obstore: one store per URI, errors mapped in one place.

Credentials come from each cloud's standard environment (obstore reads ``AWS_*``,
``GOOGLE_*``, ``AZURE_*``), for loads and saves alike; pagefault never takes them as
arguments (``settings`` may set a region or endpoint, never a secret) and never logs
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
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from obstore import exceptions as obs_errors
from obstore.store import AzureStore, GCSStore, HTTPStore, S3Store

from pagefault.errors import ConfigError, SourceError
from pagefault.sources.hub import HUB_SCHEME, hub_location
from pagefault.sources.store_errors import first_line

if TYPE_CHECKING:
    from obstore.store import ClientConfig, GCSConfig, ObjectStore, RetryConfig

__all__ = ["REMOTE_SCHEMES", "is_remote", "local_path", "store_for_uri"]

REMOTE_SCHEMES = ("http", "https", "s3", "gs", "az", HUB_SCHEME)
_SCHEMES_READ = "pagefault reads local paths, file://, " + ", ".join(
    f"{scheme}://" for scheme in REMOTE_SCHEMES
)
# obstore retries requests (connect errors, 5xx, 429) before any body byte arrives; the
# source itself resumes bodies that break mid-way (see RemoteSource).
_RETRY: RetryConfig = {
    "max_retries": 4,
    "backoff": {"init_backoff": timedelta(milliseconds=50), "max_backoff": timedelta(seconds=2)},
    "retry_timeout": timedelta(seconds=60),
}


def local_path(source: str | os.PathLike[str]) -> Path:
    """The path a non-remote ``source`` names: a plain path or a ``file://`` URI; any other
    scheme is refused here rather than looked up as a strange file name."""
    text = os.fspath(source)
    scheme, sep, _ = text.partition("://")
    if not sep or "/" in scheme:
        return Path(text)
    if scheme.lower() == "file":
        return Path(unquote(urlsplit(text).path))
    raise ConfigError(f"{text}: unsupported scheme {scheme!r} ({_SCHEMES_READ})")


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """True for URIs pagefault fetches over the network (``s3://``, ``https://`` ...)."""
    return isinstance(uri, str) and urlsplit(uri).scheme in REMOTE_SCHEMES


def store_for_uri(uri: str, settings: Mapping[str, Any] | None = None) -> tuple[ObjectStore, str]:
    """A store rooted at the bucket (or HTTP host) of ``uri``, and the key of ``uri`` in it.

    ``settings`` are extra obstore configuration keys for a bucket (``region``,
    ``endpoint``, ...); credentials among them are refused: they come from the environment.
    """
    parts = urlsplit(uri)
    if parts.scheme not in REMOTE_SCHEMES:
        raise ConfigError(f"{uri}: not a remote URI ({_SCHEMES_READ})")
    if not parts.netloc:
        where = (
            "HOST"
            if parts.scheme.startswith("http")
            else "ORG/REPO"
            if parts.scheme == HUB_SCHEME
            else "BUCKET"
        )
        raise ConfigError(f"{uri}: no {where.lower()} given (want {parts.scheme}://{where}/PATH)")
    key = parts.path.lstrip("/")
    extra = _checked_settings(uri, settings or {})
    if parts.scheme == HUB_SCHEME:
        if extra:
            raise ConfigError(f"{uri}: a Hub repository takes no settings, got {sorted(extra)}")
        root, hub_key, headers = hub_location(uri)
        return _http_store(root, headers), hub_key
    if parts.scheme in ("http", "https"):
        if extra:
            raise ConfigError(f"{uri}: an HTTP origin takes no settings, got {sorted(extra)}")
        return _http_store(f"{parts.scheme}://{parts.netloc}"), key
    try:
        return _bucket_store(parts.scheme, parts.netloc, extra), key
    except obs_errors.BaseError as exc:
        raise ConfigError(f"{uri}: cannot configure the store: {first_line(exc)}") from exc


_SECRET_WORDS = ("secret", "token", "key", "password", "credential", "service_account", "sas")


def _checked_settings(uri: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    secret = sorted(k for k in settings if any(w in str(k).lower() for w in _SECRET_WORDS))
    if secret:
        raise ConfigError(
            f"{uri}: {', '.join(secret)} look like credentials; pass credentials through the "
            "environment (AWS_*, GOOGLE_*, AZURE_*), as loads do, never as arguments"
        )
    return dict(settings)


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


def _http_store(root: str, headers: Mapping[str, str] | None = None) -> ObjectStore:
    options = _client_options(allow_http=root.startswith("http://"))
    if headers:
        options["default_headers"] = dict(headers)
    return HTTPStore.from_url(root, client_options=options, retry_config=_RETRY)


def _bucket_store(scheme: str, bucket: str, settings: dict[str, Any]) -> ObjectStore:
    if scheme == "s3":
        endpoint = (
            settings.get("endpoint")
            or os.environ.get("AWS_ENDPOINT_URL")
            or os.environ.get("AWS_ENDPOINT")
        )
        config: dict[str, Any] = {**settings, "endpoint": endpoint} if endpoint else settings
        if _anonymous_s3():
            config = {**config, "skip_signature": True}
        options = _client_options(allow_http=bool(endpoint and endpoint.startswith("http://")))
        return S3Store(bucket, config=config, client_options=options, retry_config=_RETRY)  # type: ignore[arg-type]
    if scheme == "gs":
        return _gcs_store(bucket, settings)
    # obstore's Azure emulator mode (AZURE_STORAGE_USE_EMULATOR) allows http by itself.
    options = _client_options(allow_http=False)
    return AzureStore(bucket, config=settings, client_options=options, retry_config=_RETRY)  # type: ignore[arg-type]


_AWS_CREDENTIAL_SOURCES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


def _anonymous_s3() -> bool:
    """No credentials in the environment and instance metadata switched off: sign nothing
    (a public bucket still loads) instead of letting obstore probe 169.254.169.254."""
    metadata_off = os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() in ("true", "1")
    return metadata_off and not any(os.environ.get(name) for name in _AWS_CREDENTIAL_SOURCES)


def _gcs_store(bucket: str, settings: dict[str, Any]) -> ObjectStore:
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if not emulator:
        options = _client_options(allow_http=False)
        return GCSStore(bucket, config=settings, client_options=options, retry_config=_RETRY)  # type: ignore[arg-type]
    # An emulator takes no credentials; object_store reaches a custom GCS endpoint only
    # through a service-account key naming it, with OAuth off.
    base = (emulator if "://" in emulator else f"http://{emulator}").rstrip("/")
    key = {
        "gcs_base_url": base,
        "disable_oauth": True,
        **dict.fromkeys(("client_email", "private_key", "private_key_id"), ""),
    }
    options = _client_options(allow_http=base.startswith("http://"))
    config: GCSConfig = {**settings, "service_account_key": json.dumps(key)}  # type: ignore[typeddict-item]
    try:
        return GCSStore(bucket, config=config, client_options=options, retry_config=_RETRY)
    except obs_errors.BaseError as exc:  # e.g. GOOGLE_SERVICE_ACCOUNT set as well
        raise SourceError(
            f"gs://{bucket}: STORAGE_EMULATOR_HOST={emulator} cannot be combined with the "
            f"GOOGLE_* credentials in the environment: {first_line(exc)}"
        ) from exc
