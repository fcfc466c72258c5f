"""node and the npm packages a test drives, installed by ``make install``: missing, they skip a test on a
developer's machine and fail it under ``CI=true``."""

from __future__ import annotations

import shutil

import pytest

from .databases import IN_CI, ROOT


def node_with(*packages: str) -> str:
    """The path of node, once every package in ``packages`` is in node_modules."""
    node = shutil.which("node")
    missing = [name for name in packages if not (ROOT / "node_modules" / name / "package.json").exists()]
    if node is None or missing:
        message = f"node and the npm packages {', '.join(missing or packages)} are needed (make install)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return node
