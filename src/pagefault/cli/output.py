"""Shared CLI plumbing: progress bars on a TTY only, JSON output, typed error exits."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from pagefault.errors import PagefaultError
from pagefault.system import sizes

__all__ = [
    "ProgressBar",
    "console",
    "emit_fields",
    "emit_json",
    "fail",
    "local_time",
    "parse_size",
    "plural",
    "progress_bar",
    "report_error",
    "stdout_console",
]

console = Console(stderr=True)


def parse_size(text: str) -> int:
    """Parse ``4GiB``, ``512MB``, ``1.5G`` or a plain byte count."""
    try:
        return sizes.parse_size(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def stdout_console() -> Console:
    """Tables go to stdout; when piped, use a wide page so names are not folded."""
    return Console() if sys.stdout.isatty() else Console(width=200)


def emit_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, default=str) + "\n")


def emit_fields(payload: dict[str, Any], as_json: bool) -> None:
    """A result as ``key: value`` lines a person reads, or one JSON object."""
    if as_json:
        emit_json(payload)
        return
    out = stdout_console()
    for key, value in payload.items():
        out.print(f"{key.replace('_', ' ')}: {_human(key, value)}", highlight=False)


def _human(key: str, value: Any) -> str:
    """A value as a person reads it: 1,234 bytes, a local time, yes/no, lists joined."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key in _TIMES and isinstance(value, int | float):
        return local_time(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        if {"name", "used", "capacity"} <= value.keys():  # a cache tier
            return f"{value['name']} {value['used']:,} of {value['capacity']:,} bytes"
        return ", ".join(f"{k} {_human(k, v)}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return "; ".join(_human(key, item) for item in value) or "none"
    return str(value)


_TIMES = frozenset({"updated"})  # Unix timestamps among the fields


def local_time(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def plural(count: int, noun: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def fail(exc: PagefaultError, *, as_json: bool) -> NoReturn:
    """Report a pagefault error and exit 2, as for every CLI error."""
    report_error(type(exc).__name__, str(exc), as_json=as_json)
    raise typer.Exit(2)


def report_error(kind: str, message: str, *, as_json: bool) -> None:
    """One line on stderr (never folded: log collectors keep it whole), or JSON on stdout."""
    if as_json:
        emit_json({"error": message, "type": kind})
    else:
        console.print(
            f"[red]error[/red] ({kind}): {message}", highlight=False, markup=True, soft_wrap=True
        )


class ProgressBar:
    """``advance(nbytes)`` from any thread; ``set_total`` once the size is known."""

    def __init__(self, progress: Progress | None, description: str) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=None) if progress else None

    def advance(self, nbytes: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, nbytes)

    def describe(self, description: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=description)

    def set_total(self, total: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=total)


@contextmanager
def progress_bar(description: str, *, enabled: bool) -> Iterator[ProgressBar]:
    """Yield a ``ProgressBar``; it draws only when enabled and stderr is a TTY."""
    if not enabled or not console.is_terminal:
        yield ProgressBar(None, description)
        return
    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(
        "[progress.description]{task.description}", *columns, console=console, transient=True
    ) as progress:
        yield ProgressBar(progress, description)
