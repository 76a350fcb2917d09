"""The ``pagefault`` command line (typer + rich)."""

from pagefault.cli.commands import app

__all__ = ["app", "main"]


def main() -> None:
    app()
