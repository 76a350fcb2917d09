"""Waiting in tests for something another thread or process does, without sleeping blind."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Whether ``condition()`` holds within ``timeout`` seconds (asked every ``interval``)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
