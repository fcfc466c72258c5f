"""The OpenAPI document of the endpoint, shipped as ``openapi.json`` beside this module."""

from __future__ import annotations

import functools
import json
from importlib.resources import files

__all__ = ["openapi_document"]


@functools.lru_cache(maxsize=8)
def openapi_document(path: str = "/sql") -> bytes:
    """The document, with the endpoint at ``path``."""
    document = json.loads(files(__package__).joinpath("openapi.json").read_text(encoding="utf-8"))
    [operations] = document["paths"].values()  # one path, written as /sql in the file
    document["paths"] = {path: operations}
    return json.dumps(document, separators=(",", ":")).encode()
