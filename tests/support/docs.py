"""Reading the docs from tests: the cells of Markdown tables."""

from __future__ import annotations

from .databases import ROOT


def table_rows(path: str) -> list[list[str]]:
    """The cells of every Markdown table row in ``path`` (relative to the repository root)."""
    lines = (ROOT / path).read_text().splitlines()
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines if line.startswith("| ")]
