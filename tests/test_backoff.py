"""While a database is down, reconnects back off: the endpoint answers fast 503s instead of hammering it with a
connect per request."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from .support import Client


@pytest.fixture
def make_client(make_engine_client: Callable[..., Client]) -> Callable[..., Client]:
    return make_engine_client


class Slammer:
    """A listener that takes every connection and closes it at once, as a database that is starting up, shutting
    down or out of slots would: the driver fails, and we count how often it was tried."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def slammer() -> Iterator[Slammer]:
    listener = Slammer()
    yield listener
    listener.close()


@pytest.mark.parametrize("scheme", ["postgresql", "mariadb"])
def test_a_database_that_is_down_is_not_hammered(make_client: Callable[..., Client], slammer: Slammer,
                                                 scheme: str) -> None:
    client = make_client(targets={"down": f"{scheme}://127.0.0.1:{slammer.port}/test"}, reconnect_backoff=0.4,
                         connect_timeout=2)
    body = {"cacheId": "down", "username": "u", "password": "p", "database": "test",
            "provider": "postgres" if scheme == "postgresql" else "mysql", "sql": "select 1"}
    started = time.monotonic()
    slowest = 0.0
    replies = []
    while time.monotonic() - started < 1.5:
        sent = time.monotonic()
        replies.append(client.post(body))
        slowest = max(slowest, time.monotonic() - sent)
    statuses = {reply.status for reply in replies}
    assert statuses == {503}, statuses
    assert {reply.json()["code"] for reply in replies} == {"DATABASE_UNAVAILABLE"}
    assert len(replies) > 50  # answered fast...
    # ...and tried at most once per pause: 0.1, 0.2, 0.4, 0.4 s (with jitter, never longer) in 1.5 s, not once per
    # request.
    assert 2 <= slammer.accepted <= 12, (slammer.accepted, len(replies))
    assert slowest < 1.0
    waiting = [reply for reply in replies if "next attempt" in reply.json()["message"]]
    assert waiting and all(reply.headers.get("retry-after") == "1" for reply in waiting)
