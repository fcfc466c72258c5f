"""A smoke run of the benchmarks (a second or two each): the harness works; the figures live in docs/benchmarks.md."""

from __future__ import annotations

import json
import subprocess
import sys

from .support import ROOT


def test_request_path_benchmark_smoke() -> None:
    """PolyScale's and libSQL's 100 rows on the same SQLite target and server, and one libSQL transaction."""
    done = subprocess.run([sys.executable, "bench/run.py", "--smoke"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    lines = [json.loads(text) for text in done.stdout.splitlines() if text.startswith("{")]
    figures = {line["case"]: line for line in lines if "case" in line}
    assert set(figures) == {"rows100", "libsql-rows100", "libsql-tx"}
    for name in ("rows100", "libsql-rows100"):
        assert figures[name]["errors"] == 0
        assert figures[name]["requests_per_second"] > 0 and 0 < figures[name]["p50_ms"] <= figures[name]["p99_ms"]
    assert figures["libsql-rows100"]["bytes"] > figures["rows100"]["bytes"] > 2  # typed values, one row either way
    assert figures["libsql-tx"] == {"case": "libsql-tx", "answers": 3, "errors": 0}


def test_rate_limiter_benchmark_smoke() -> None:
    done = subprocess.run([sys.executable, "bench/ratelimit.py", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    assert "shared memory" in done.stdout and "SIGKILL under load" in done.stdout
