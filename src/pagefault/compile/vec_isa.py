"""Inductor's CPU vector-ISA probe, run once per stack instead of once per process.

Every fresh process that compiles for the CPU builds a test kernel for each vector ISA
the CPU claims (AVX2, AVX-512, ...) and loads it in a child Python: 1.2-1.4 s of a
4.3 s warm start on the development VM (docs/benchmarks.md). The outcome depends only
on the CPU's claims and the C++ compiler, so the bundle carries it (:data:`RECORD`). A
process whose claims and compiler match the record tells inductor that the ISAs build
(``config.cpp.vec_isa_ok = True``) instead of probing. A process without a matching
record probes up front and, when every claimed ISA passed, sets the same flag: warm and
cold processes then compile under one inductor config, so their FX-graph cache keys
agree. Anything else (an ISA that failed, a CPU other than x86, a torch whose internals
moved) leaves inductor to probe as it always does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["RECORD", "vec_isa_settled"]

RECORD = "pagefault-vec-isa.json"


@contextlib.contextmanager
def vec_isa_settled(directory: Path) -> Iterator[str]:
    """Within the block, inductor skips its ISA probe when ``directory``'s record (or a
    probe run now) vouches for every ISA this CPU claims. Yields how: ``"recorded"``
    (probe skipped), ``"probed"``, or ``"inductor"`` (left to inductor)."""
    from torch._inductor import config  # noqa: PLC0415 - inductor is heavy

    previous = config.cpp.vec_isa_ok
    outcome = None
    if previous is None:  # the user has not decided: ours to settle
        outcome = _settle(directory / RECORD)
        if outcome is not None:
            config.cpp.vec_isa_ok = True
    try:
        yield outcome or "inductor"
    finally:
        config.cpp.vec_isa_ok = previous


def _settle(record: Path) -> str | None:
    """``"recorded"`` or ``"probed"`` when every claimed ISA is known to build, else None."""
    facts = _facts()
    if facts is None:
        return None
    try:
        if json.loads(record.read_text()) == facts:
            return "recorded"
    except (OSError, ValueError):
        pass  # no record, or one from an older layout: probe
    from torch._inductor.cpu_vec_isa import valid_vec_isa_list  # noqa: PLC0415

    if sorted(str(isa) for isa in valid_vec_isa_list()) != facts["isas"]:
        return None  # an ISA the CPU claims does not build here: inductor must choose
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(facts, sort_keys=True))
    return "probed"


def _facts() -> dict[str, Any] | None:
    """What the probe's outcome depends on: the ISAs the CPU claims and the compiler."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler  # noqa: PLC0415
        from torch._inductor.cpu_vec_isa import (  # noqa: PLC0415
            supported_vec_isa_list,
            x86_isa_checker,
        )
    except ImportError:
        return None
    flags = set(x86_isa_checker())  # empty off x86: nothing to settle
    claimed = sorted(str(isa) for isa in supported_vec_isa_list if set(str(isa).split()) <= flags)
    compiler = shutil.which(get_cpp_compiler())
    if not claimed or compiler is None:
        return None
    return {"isas": claimed, "compiler": _file_digest(os.path.realpath(compiler))}


def _file_digest(path: str) -> str:
    """The compiler binary's SHA-256 (a driver of about 1 MB: a millisecond)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
