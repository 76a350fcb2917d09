"""Child side of the SIGKILL test: save checkpoint B over A and stop at a chosen point.

Runs in a forkserver child (torch already imported there, so each kill costs
milliseconds, not an interpreter start). ``block_at`` bytes into persistence the
progress callback reports ``ready`` and blocks forever: the parent then SIGKILLs
this process at exactly that point. ``block_at=None`` runs free (killed on a timer).
"""

from __future__ import annotations

import threading
from multiprocessing.connection import Connection
from pathlib import Path

import torch

import pagefault

SHARD_LIMIT = 700_000


def state_dict(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        f"layer.{i}.weight": torch.randn(160 + i, 240, generator=gen).to(torch.bfloat16)
        for i in range(24)
    } | {"bias": torch.randn(333, generator=gen)}


def save_and_stop(dest: str, seed: int, block_at: int | None, conn: Connection) -> None:
    written = 0
    lock = threading.Lock()

    def progress(nbytes: int) -> None:
        nonlocal written
        with lock:
            written += nbytes
            reached = block_at is not None and written >= block_at
        if reached:
            conn.send("ready")
            threading.Event().wait()  # hold here until SIGKILL

    conn.send("started")
    handle = pagefault.save(
        state_dict(seed), Path(dest), max_shard_size=SHARD_LIMIT, on_progress=progress
    )
    handle.wait()
    conn.send("done")
    threading.Event().wait()  # a timer kill may come after the commit: wait for it
