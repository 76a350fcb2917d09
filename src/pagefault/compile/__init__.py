"""torch.compile artifacts, cached on the node and shared through a store like weights.

Torch loads only with the names that need it (the CLI's ``compile-cache`` verbs do not).
"""

from typing import TYPE_CHECKING

from pagefault._lazy import lazy_exports

if TYPE_CHECKING:  # the names below load on first use: see pagefault._lazy
    from pagefault.compile.key import CompileKey, compile_key
    from pagefault.compile.session import CompileCache, CompileStats, compile_cache
    from pagefault.compile.stores import STORE_ENV, compile_root, open_store

_EXPORTS = {
    "CompileCache": "pagefault.compile.session",
    "CompileKey": "pagefault.compile.key",
    "CompileStats": "pagefault.compile.session",
    "STORE_ENV": "pagefault.compile.stores",
    "compile_cache": "pagefault.compile.session",
    "compile_key": "pagefault.compile.key",
    "compile_root": "pagefault.compile.stores",
    "open_store": "pagefault.compile.stores",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

__all__ = [
    "STORE_ENV",
    "CompileCache",
    "CompileKey",
    "CompileStats",
    "compile_cache",
    "compile_key",
    "compile_root",
    "open_store",
]
