"""One place where every CLI failure becomes one line (or one JSON object) and exit 2.

Commands raise; nothing below prints a traceback. ``--json`` anywhere on the command
line makes the report ``{"error": ..., "type": ...}`` on stdout. Ctrl-C stops at once
(worker threads are not waited for: partial downloads are journaled and resume).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from pagefault.errors import PagefaultError

from .output import report_error

__all__ = ["DEBUG_ENV", "INTERRUPTED_EXIT", "PagefaultGroup"]

INTERRUPTED_EXIT = 130  # 128 + SIGINT, as shells report it
DEBUG_ENV = "PAGEFAULT_DEBUG"


def _interrupted(as_json: bool) -> None:
    report_error("Interrupted", "interrupted; re-run to resume", as_json=as_json)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED_EXIT)  # do not wait for I/O threads: their work is journaled


class PagefaultGroup(TyperGroup):
    """The root command: runs a command and reports whatever it raises, typed."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        as_json = "--json" in argv
        code = 0
        try:
            result = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
            code = result if isinstance(result, int) else 0
            if code == INTERRUPTED_EXIT:  # typer turns Ctrl-C into this exit code
                _interrupted(as_json)
        except typer.Exit as exc:
            code = exc.exit_code
        except typer.TyperException as exc:  # usage: unknown option, bad value, missing argument
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            if message:  # empty: help was printed instead (no arguments)
                report_error("UsageError", message, as_json=as_json)
            code = 2
        except (typer.Abort, KeyboardInterrupt):
            _interrupted(as_json)
        except PagefaultError as exc:
            report_error(type(exc).__name__, str(exc), as_json=as_json)
            code = 2
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                traceback.print_exc()
            message = f"{exc} (unexpected: please report it; {DEBUG_ENV}=1 prints the traceback)"
            report_error(type(exc).__name__, message, as_json=as_json)
            code = 2
        if standalone_mode:
            sys.exit(code)
        return code
