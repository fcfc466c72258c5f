"""Hrana pipelines for the in-process tests: the bodies libSQL's client sends, and the values it reads."""

from __future__ import annotations

from typing import Any

from .clients import Client, Reply

TOKEN = "lite-token"


def stmt(sql: str, *args: Any, **named: Any) -> dict[str, Any]:
    """A Hrana statement with its arguments as Hrana values (from Python values)."""
    body: dict[str, Any] = {"sql": sql, "args": [value(a) for a in args]}
    if named:
        body["named_args"] = [{"name": name, "value": value(v)} for name, v in named.items()]
    return body


def execute(sql: str, *args: Any, **named: Any) -> dict[str, Any]:
    return {"type": "execute", "stmt": stmt(sql, *args, **named)}


CLOSE = {"type": "close"}


def value(python: Any) -> dict[str, Any]:
    if python is None:
        return {"type": "null"}
    if isinstance(python, int):  # and bool
        return {"type": "integer", "value": str(int(python))}
    if isinstance(python, float):
        return {"type": "float", "value": python}
    if isinstance(python, bytes):
        import base64

        return {"type": "blob", "base64": base64.b64encode(python).decode()}
    return {"type": "text", "value": python}


def pipeline(client: Client, requests: list[dict[str, Any]], baton: str | None = None, *, target: str = "lite",
             version: str = "v2", token: str | None = TOKEN) -> Reply:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post({"baton": baton, "requests": requests}, path=f"/sql/{target}/{version}/pipeline",
                       headers=headers)


def results(reply: Reply) -> list[dict[str, Any]]:
    """The pipeline's results, after checking the reply is a 200 with one result per request."""
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    return body["results"]  # type: ignore[no-any-return]


def rows(result: dict[str, Any]) -> list[list[Any]]:
    """An ok execute result's rows as Python values."""
    assert result["type"] == "ok", result
    return [[python(v) for v in row] for row in result["response"]["result"]["rows"]]


def python(hrana: dict[str, Any]) -> Any:
    kind = hrana["type"]
    if kind == "null":
        return None
    if kind == "integer":
        assert isinstance(hrana["value"], str)
        return int(hrana["value"])
    if kind == "blob":
        import base64

        text = hrana["base64"]
        return base64.b64decode(text + "=" * (-len(text) % 4))
    return hrana["value"]
