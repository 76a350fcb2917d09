"""Exponential backoff with full jitter, for sources that talk to a network.

The clock and the sleep are injectable so tests can check the schedule without waiting.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from obstore import exceptions as obs_errors

__all__ = ["RETRYABLE", "RetryPolicy"]

# What a retry can cure: a dropped connection, a timeout, a 5xx obstore gave up on.
RETRYABLE = (obs_errors.GenericError, ConnectionError, TimeoutError)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times, and how patiently, to retry a failed request.

    ``attempts`` counts consecutive failures *without progress*: a ranged read that
    received bytes before failing resumes from the last byte with a fresh budget.
    """

    attempts: int = 6
    base_delay: float = 0.05
    max_delay: float = 5.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, failure: int) -> float:
        """Seconds to wait after consecutive failure number ``failure`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (failure - 1))
        return self.rng.uniform(0, ceiling)

    def backoff(self, failure: int) -> bool:
        """Sleep before the next try; False once ``attempts`` failures in a row are spent."""
        if failure >= self.attempts:
            return False
        self.sleep(self.delay(failure))
        return True
