"""Checkpoints: snapshot a state dict, persist it in the background, commit atomically.

Layers inside: ``plan`` (pure shard layout) → ``buffers`` (staging memory policy) →
``snapshot`` (the copy) → ``writers``/``local`` (destinations and their commit
protocol) → ``persist`` (parallel writes and piece hashes) → ``saver`` (wiring).
"""

from pagefault.checkpoint.buffers import StagingPool, default_pool, free_staging_buffers
from pagefault.checkpoint.local import LocalDirectoryWriter
from pagefault.checkpoint.persist import SaveStats
from pagefault.checkpoint.plan import (
    DEFAULT_MAX_SHARD_SIZE,
    INDEX_NAME,
    SavePlan,
    ShardPlan,
    plan_save,
)
from pagefault.checkpoint.saver import SaveHandle, SaveOptions, start_save
from pagefault.checkpoint.writers import (
    CheckpointWriter,
    ObjectStoreWriter,
    open_writer,
)

__all__ = [
    "DEFAULT_MAX_SHARD_SIZE",
    "INDEX_NAME",
    "CheckpointWriter",
    "LocalDirectoryWriter",
    "ObjectStoreWriter",
    "SaveHandle",
    "SaveOptions",
    "SavePlan",
    "SaveStats",
    "ShardPlan",
    "StagingPool",
    "default_pool",
    "free_staging_buffers",
    "open_writer",
    "plan_save",
    "start_save",
]
