"""``python -m pagefault``: the same as the ``pagefault`` command."""

from pagefault.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    main()
