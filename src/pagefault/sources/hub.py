"""Hugging Face Hub repositories as origins: ``hf://ORG/REPO[@REVISION][/PATH]``.

The Hub's API (through ``huggingface_hub``, the maintained client) turns a revision
(``main`` by default, a branch, a tag or a commit) into its commit hash and file list;
every URI is then rewritten to name that commit, so one load reads one commit however
long it runs. Bytes come from the Hub's ``resolve`` URLs with the same obstore HTTP
client as any origin: parallel ranged GETs, redirects to the CDN followed, ETags pinned,
the node cache and the swarm in front (``object_store`` builds the store, with the
same timeouts, retries and CA handling as any HTTPS origin). ``HF_ENDPOINT`` points at
a mirror or a local server; ``HF_TOKEN`` (or the token ``hf auth login`` saved) is sent
to the endpoint only, never to the CDN it redirects to, and never logged.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from urllib.parse import quote, unquote

from pagefault.errors import ConfigError, NotFound, SourceError

__all__ = ["HUB_SCHEME", "HubRef", "hub_listing", "hub_location", "pin_revision"]

HUB_SCHEME = "hf"
DEFAULT_ENDPOINT = "https://huggingface.co"
_COMMIT = re.compile(r"[0-9a-f]{40}")
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_files_by_commit: dict[tuple[str, str, str], dict[str, int]] = {}  # a commit never changes
_lock = threading.Lock()


@dataclass(frozen=True)
class HubRef:
    """A parsed ``hf://`` URI: repository, revision and the path inside it."""

    repo: str
    revision: str
    path: str

    @classmethod
    def parse(cls, uri: str) -> HubRef:
        prefix = f"{HUB_SCHEME}://"
        if not uri.startswith(prefix):
            raise ConfigError(f"{uri}: not an {prefix} URI")
        parts = uri[len(prefix) :].split("/", 2)
        if len(parts) < 2 or not parts[1]:
            raise ConfigError(f"{uri}: want {prefix}ORG/REPO[@REVISION][/PATH]")
        org, name = parts[0], parts[1]
        name, _, revision = name.partition("@")
        if not (_PART.fullmatch(org) and _PART.fullmatch(name)):
            raise ConfigError(f"{uri}: {org}/{name} is not a Hub repository name")
        revision = unquote(revision) if revision else "main"  # refs%2Fpr%2F1 for refs/pr/1
        return cls(f"{org}/{name}", revision, parts[2] if len(parts) == 3 else "")

    @property
    def pinned(self) -> bool:
        return bool(_COMMIT.fullmatch(self.revision))

    def uri(self, revision: str | None = None) -> str:
        rev = quote(revision or self.revision, safe="")
        return f"{HUB_SCHEME}://{self.repo}@{rev}/{self.path}"


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def pin_revision(uri: str) -> str:
    """``uri`` with its revision replaced by the commit hash it names now."""
    ref = HubRef.parse(uri)
    if ref.pinned:
        return ref.uri()
    commit, files = _revision(ref)
    with _lock:
        _files_by_commit[(endpoint(), ref.repo, commit)] = files
    return ref.uri(commit)


def hub_listing(uri: str, *, recursive: bool = False) -> list[str]:
    """Names of the files inside the directory ``uri`` names (a pinned URI): directly
    inside it, or (``recursive``) as paths relative to it."""
    ref = HubRef.parse(uri)
    key = (endpoint(), ref.repo, ref.revision)
    with _lock:
        files = _files_by_commit.get(key)
    if files is None:
        _, files = _revision(ref)
        with _lock:
            _files_by_commit[key] = files
    directory = ref.path.strip("/")
    prefix = f"{directory}/" if directory else ""
    return sorted(
        name[len(prefix) :]
        for name in files
        if name.startswith(prefix) and (recursive or "/" not in name[len(prefix) :])
    )


def hub_location(uri: str) -> tuple[str, str, dict[str, str]]:
    """The endpoint of ``uri``, its ``resolve`` key, and the headers the endpoint wants
    (the token: obstore drops it on the redirect to another host, the CDN)."""
    ref = HubRef.parse(uri)
    commit = ref.revision if ref.pinned else HubRef.parse(pin_revision(uri)).revision
    headers = {"authorization": f"Bearer {token}"} if (token := _token()) else {}
    return endpoint(), f"{ref.repo}/resolve/{commit}/{ref.path}", headers


def _token() -> str | None:
    from huggingface_hub import get_token  # noqa: PLC0415 - 0.3 s: only for hf:// URIs

    return get_token()


def _revision(ref: HubRef) -> tuple[str, dict[str, int]]:
    """The commit ``ref.revision`` names now, and every file of it with its size."""
    from huggingface_hub import HfApi  # noqa: PLC0415 - 0.3 s: only for hf:// URIs
    from huggingface_hub.errors import (  # noqa: PLC0415
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{HUB_SCHEME}://{ref.repo}@{ref.revision} ({endpoint()})"
    try:
        info = HfApi(endpoint=endpoint(), token=_token()).model_info(
            ref.repo, revision=ref.revision, files_metadata=True
        )
    except GatedRepoError as exc:
        raise SourceError(f"{where}: gated; accept its terms on the Hub and set HF_TOKEN") from exc
    except RevisionNotFoundError as exc:
        raise NotFound(f"{where}: no such revision") from exc
    except RepositoryNotFoundError as exc:
        raise NotFound(f"{where}: no such repository (or it is private: set HF_TOKEN)") from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise SourceError(f"{where}: the Hub API failed: {str(exc).splitlines()[0]}") from exc
    if not info.sha:
        raise SourceError(f"{where}: the Hub did not name the revision's commit")
    files = {s.rfilename: int(s.size or 0) for s in info.siblings or ()}
    return info.sha, files
