"""Where the doctor keeps this boot's figures."""

from __future__ import annotations

import os
from pathlib import Path

from pagefault.cache.config import load_config
from pagefault.doctor.facts import boot_id

__all__ = ["RECORD_ENV", "record_path"]

RECORD_ENV = "PAGEFAULT_DOCTOR_RECORD"


def record_path() -> Path:
    """Where this boot's figures are kept: the node cache's ``doctor`` directory, or
    the file ``PAGEFAULT_DOCTOR_RECORD`` names."""
    named = os.environ.get(RECORD_ENV)
    if named:
        return Path(named)
    return load_config().disk_dir.expanduser() / "doctor" / f"{boot_id()}.json"
