"""A smoke run of the benchmarks (a second or two each): the harness works; the figures live in docs/benchmarks.md."""

from __future__ import annotations

import json
import subprocess
import sys

from .support import ROOT


def test_request_path_benchmark_smoke() -> None:
    done = subprocess.run([sys.executable, "bench/run.py", "--smoke"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["errors"] == 0
    assert figures["requests_per_second"] > 0 and 0 < figures["p50_ms"] <= figures["p99_ms"]


def test_rate_limiter_benchmark_smoke() -> None:
    done = subprocess.run([sys.executable, "bench/ratelimit.py", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    assert "shared memory" in done.stdout and "SIGKILL under load" in done.stdout
