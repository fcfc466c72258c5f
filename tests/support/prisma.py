"""Prisma's client for the ORM tests, from the npm registry alone: ``prisma generate`` for a schema (the schema
engine, which Prisma would download from elsewhere, is pointed at the null device: generating needs none), then the
test's script bundled with esbuild against the generated client."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .databases import ROOT

JS = ROOT / "tests" / "js"
NODE_MODULES = ROOT / "node_modules"


def prisma_bundle(node: str, work: Path, schema: str, script: str) -> Path:
    """``tests/js/SCRIPT.mjs``, bundled into ``work`` with a client generated from ``schema``; the script imports
    the client as ``SCRIPT-client``."""
    (work / "node_modules").symlink_to(NODE_MODULES)  # the bundle's bare imports resolve from ROOT's packages
    (work / "schema.prisma").write_text(schema)
    env = {**os.environ, "PRISMA_SCHEMA_ENGINE_BINARY": os.devnull, "CHECKPOINT_DISABLE": "1",
           "PRISMA_HIDE_UPDATE_MESSAGE": "1"}
    generate = subprocess.run([node, str(NODE_MODULES / "prisma" / "build" / "index.js"), "generate", "--schema",
                               "schema.prisma", "--no-hints"], cwd=work, env=env, capture_output=True, timeout=120)
    assert generate.returncode == 0, generate.stdout.decode() + generate.stderr.decode()
    bundle = work / f"{script}.bundle.mjs"
    build = subprocess.run([str(NODE_MODULES / ".bin" / "esbuild"), str(JS / f"{script}.mjs"), "--bundle",
                            "--platform=node", "--format=esm", "--packages=external", "--log-level=warning",
                            f"--alias:{script}-client={work / 'generated' / 'client.ts'}", f"--outfile={bundle}"],
                           cwd=work, capture_output=True, timeout=60)
    assert build.returncode == 0, build.stderr.decode()
    return bundle
