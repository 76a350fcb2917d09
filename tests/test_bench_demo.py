"""The README's first command: a short run of the load benchmark, readable at 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent.parent / "bench" / "load_bench.py"


def test_quick_benchmark_prints_80_column_tables_of_medians(tmp_path: Path) -> None:
    argv = [sys.executable, str(BENCH), "--size", "8MiB", "--quick", "--no-hugetlb-pool"]
    argv += ["--dir", str(tmp_path), "--only", "raw-preadv", "pagefault-mapped"]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "hot page cache: median of 3 runs" in done.stdout
    assert "cold page cache: median of 1 run" in done.stdout
    assert any(line.startswith("│ pagefault-mapped") for line in lines)
    report = [line for line in lines if not line.startswith("writing a ")]  # names a path
    assert max(len(line) for line in report) <= 80
