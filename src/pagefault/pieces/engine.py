"""The one way pagefault works through a model's pieces on threads.

Reading, hashing and storing pieces release the GIL, so a bounded thread pool keeps the
disk or the network busy. Unlike ``ThreadPoolExecutor.map``, which queues every job at
once and reports a failure only when its turn comes (after every queued piece before it
ran), :func:`map_pieces` keeps at most twice ``threads`` jobs queued and raises the first
error as soon as it happens, cancelling every job not yet started.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from pagefault.errors import ConfigError

__all__ = ["check_threads", "map_pieces"]

Job = TypeVar("Job")
Result = TypeVar("Result")


def check_threads(threads: int | None) -> None:
    """The one rule for a user's thread count: unset (automatic) or at least 1."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise ConfigError(f"threads must be a whole number, got {threads!r}")
    if threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")


def map_pieces(
    work: Callable[[Job], Result], jobs: Iterable[Job], *, threads: int, name: str
) -> list[Result]:
    """``[work(job) for job in jobs]`` on ``threads`` threads, results in job order.

    The first error cancels the jobs not yet started and is raised once the (at most
    ``threads``) running ones return. Ctrl-C returns at once, leaving the running jobs
    to finish (or die with the process) on their own.

    >>> map_pieces(lambda n: n * n, range(5), threads=2, name="square")
    [0, 1, 4, 9, 16]
    """
    numbered = iter(enumerate(jobs))
    results: dict[int, Result] = {}
    pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix=f"pagefault-{name}")
    pending: dict[Future[Result], int] = {}
    interrupted = False

    def refill() -> None:
        for index, job in numbered:
            pending[pool.submit(work, job)] = index
            if len(pending) >= 2 * max(1, threads):
                return

    try:
        refill()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    raise error
                results[index] = future.result()
            refill()
    except (KeyboardInterrupt, SystemExit):
        interrupted = True  # Ctrl-C: return now; the running jobs' work is journaled
        raise
    finally:
        pool.shutdown(wait=not interrupted, cancel_futures=True)
    return [results[index] for index in range(len(results))]
