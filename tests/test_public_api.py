"""The public surface is curated: __all__ is complete, and every error is a PagefaultError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pagefault
from pagefault import errors

EXPECTED = {
    "CacheConfig",
    "NodeCache",
    "load",
    "stream",
    "load_into",
    "inspect",
    "save",
    "SaveHandle",
    "PagefaultError",
    "FormatError",
    "ConfigError",
    "NotFound",
    "IntegrityError",
    "SourceError",
    "SinkError",
    "LoadIntoError",
    "CacheError",
    "SwarmError",
    "CheckpointError",
    "IncompatibleKeys",
    "LoadStats",
    "Manifest",
    "TensorEntry",
    "TensorStream",
    "__version__",
    "PieceManifest",
    "PullResult",
    "VerifyReport",
    "make_piece_manifest",
    "pull",
    "verify",
    "write_piece_manifest",
    "compile_cache",
    "CompileStats",
    "recycle",
    "release_recycled",
    "paged",
    "PagedModel",
    "PagedStats",
}


def test_top_level_all_is_curated() -> None:
    assert set(pagefault.__all__) == EXPECTED
    for name in pagefault.__all__:
        assert hasattr(pagefault, name)


def test_every_module_has_complete_all() -> None:
    for info in pkgutil.walk_packages(pagefault.__path__, "pagefault."):
        module = importlib.import_module(info.name)
        assert hasattr(module, "__all__"), info.name
        for name in module.__all__:
            assert hasattr(module, name), f"{info.name}.{name}"


def test_error_tree() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert inspect.isclass(cls) and issubclass(cls, pagefault.PagefaultError)
    assert issubclass(pagefault.NotFound, FileNotFoundError)
    assert issubclass(pagefault.FormatError, ValueError)
