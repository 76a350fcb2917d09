"""torch.compile artifacts, cached on the node and shared through a store like weights."""

from pagefault.compile.key import CompileKey, compile_key
from pagefault.compile.session import CompileCache, CompileStats, compile_cache, compile_root
from pagefault.compile.stores import STORE_ENV, open_store

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
