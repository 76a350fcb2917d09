"""The C library, loaded once for the few calls Python does not wrap (madvise, mmap at a
fixed address, cachestat, fallocate): every caller sets the prototypes it needs."""

from __future__ import annotations

import ctypes

__all__ = ["LIBC"]

LIBC = ctypes.CDLL(None, use_errno=True)
