"""The ``pagefault`` command line (typer + rich)."""

from pagefault.cli import cache, compile, node, remote, swarm  # noqa: F401 - they register commands
from pagefault.cli.commands import app

__all__ = ["app", "main"]


def main() -> None:
    app()
