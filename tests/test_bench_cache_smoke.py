"""Smoke runs of bench/cache.py and bench/planetscale.py (a fraction of a second a case, Python load generator, a
database of their own): the harness works and the cache hits. No speed is asserted; the figures live in
docs/benchmarks.md."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

from .support import ROOT, unavailable

sys.path.insert(0, str(ROOT))
from bench.cache import write_marked

OTHER = "# Benchmarks\n\n## Request path, side by side\n\nkept as it is\n"


def _servers() -> None:
    for name, port in (("PostgreSQL", 5432), ("MariaDB", 3306)):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError as exc:
            unavailable(f"{name} on 127.0.0.1:{port}", exc)


def _smoke(script: str, doc: Path) -> dict[str, dict[str, object]]:
    _servers()
    done = subprocess.run([sys.executable, f"bench/{script}", "--smoke", "--write", str(doc)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(text) for text in done.stdout.splitlines() if text.startswith("{")]
    figures = {str(line.get("case", "")): line for line in lines}
    for name, line in figures.items():
        if name:
            assert line["errors"] == 0, line
            assert line["requests_per_second"] > 0 and 0 < line["p50_ms"] <= line["p99_ms"], line  # type: ignore
    return figures


def test_cache_benchmark_smoke(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(OTHER)
    figures = _smoke("cache.py", doc)
    assert figures[""] == {"cache_hits": "MISS, HIT, HIT, HIT"}
    assert figures["ours, cache on (`pgc`)"]["x_cache"] == "HIT"
    assert figures["ours, cache off (`pg`)"]["x_cache"] == "none"
    assert "Starlette + asyncpg" in figures
    assert figures["insert, cache on (`pgc`)"]["x_cache"] == "BYPASS; reason=write"
    assert str(figures["volatile, cache on (`pgc`)"]["x_cache"]).startswith("BYPASS; reason=")
    for workload in ("insert", "volatile"):
        assert figures[f"{workload}, cache off (`pg`)"]["x_cache"] == "none"
        assert figures[f"{workload}, no cache in the mount (`/plain/sql`)"]["x_cache"] == "none"
    text = doc.read_text()
    assert text.startswith(OTHER)
    assert text.count("<!-- bench:cache -->") == text.count("<!-- /bench:cache -->") == 1
    assert "| ours, cache on (`pgc`) |" in text and "| insert | cache on (`pgc`) |" in text


def test_planetscale_benchmark_smoke(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(OTHER)
    figures = _smoke("planetscale.py", doc)
    assert set(figures) == {f"{side} {w}" for side in ("PolyScale", "PlanetScale") for w in ("select1", "rows100")}
    assert figures["PlanetScale rows100"]["bytes"] > figures["PlanetScale select1"]["bytes"] > 0  # type: ignore
    assert figures["PolyScale rows100"]["bytes"] > figures["PolyScale select1"]["bytes"] > 0  # type: ignore
    text = doc.read_text()
    assert text.startswith(OTHER) and text.count("<!-- bench:planetscale -->") == 1


def test_sections_are_replaced_in_place(tmp_path: Path) -> None:
    """Each script's section is replaced where it stands, the others untouched; and a writer that replaces the
    section before it up to the next `## ` heading (as bench/run.py's does) keeps its markers."""
    doc = tmp_path / "benchmarks.md"
    doc.write_text(OTHER)
    write_marked(doc, "cache", "## Cache\n\nfirst\n")
    write_marked(doc, "planetscale", "## PlanetScale\n\nfirst\n")
    doc.write_text(doc.read_text() + "\n## Written by hand\n\nkept\n")
    write_marked(doc, "cache", "## Cache\n\nsecond\n")
    text = doc.read_text()
    assert text == (OTHER + "\n## Cache\n<!-- bench:cache -->\nsecond\n<!-- /bench:cache -->\n\n"
                    "## PlanetScale\n<!-- bench:planetscale -->\nfirst\n<!-- /bench:planetscale -->\n\n"
                    "## Written by hand\n\nkept\n")
    rest = text.split("## Request path, side by side", 1)[1]
    following = re.search(r"\n## (?!#)", rest)
    assert following is not None and rest[following.start():].startswith("\n## Cache\n<!-- bench:cache -->")
