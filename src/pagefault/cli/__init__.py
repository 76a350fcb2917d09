"""The ``pagefault`` command line (typer + rich)."""

from pagefault.cli import remote  # noqa: F401 - registers manifest/verify/pull on the app
from pagefault.cli.commands import app

__all__ = ["app", "main"]


def main() -> None:
    app()
