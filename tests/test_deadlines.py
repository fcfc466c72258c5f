"""The parts the deadlines are built of, on their own: a cancel that hangs delays no other deadline, the hard
deadline shuts the socket down under a blocked read, an aborted request is stopped at once, and a database that is
down is not hammered."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from sqlhttp_middleware import errors
from sqlhttp_middleware.engine.deadline import Abort, Backoff, Guard, current_abort
from sqlhttp_middleware.watchdog import Watchdog


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def blocked_read(sock: socket.socket) -> tuple[threading.Thread, list[float]]:
    """A thread blocked in recv on ``sock``, as a driver waits for a database that does not answer; records when
    the read returned."""
    returned: list[float] = []

    def read() -> None:
        with contextlib.suppress(OSError):
            sock.recv(1)
        returned.append(time.monotonic())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, returned


def test_the_hard_deadline_shuts_the_socket_down_under_a_blocked_read(pair: tuple[socket.socket, ...]) -> None:
    ours, _ = pair
    thread, returned = blocked_read(ours)
    started = time.monotonic()
    guard = Guard(Watchdog(), soft_at=started + 0.1, hard_at=started + 0.3, grace=1.0, cancel=None,
                  fd=ours.fileno())
    thread.join(5)
    assert returned and 0.25 <= returned[0] - started < 1.0
    assert guard.abandoned
    assert guard.close() is False  # never reused


def test_a_cancel_that_hangs_delays_no_other_deadline(pair: tuple[socket.socket, ...]) -> None:
    """The cancel of a frozen database waits on it for seconds; it runs on a thread of its own, so another
    target's hard deadline, on the same watchdog, still holds to the tenth of a second."""
    watchdog = Watchdog()
    cancel_started = threading.Event()

    def hung_cancel() -> None:
        cancel_started.set()
        time.sleep(3)

    frozen_ours, frozen_theirs = socket.socketpair()
    healthy_ours, _ = pair
    now = time.monotonic()
    frozen = Guard(watchdog, soft_at=now, hard_at=now + 10, grace=1.0, cancel=hung_cancel, fd=frozen_ours.fileno())
    assert cancel_started.wait(2)
    thread, returned = blocked_read(healthy_ours)
    started = time.monotonic()
    healthy = Guard(watchdog, soft_at=started + 0.1, hard_at=started + 0.2, grace=1.0, cancel=hung_cancel,
                    fd=healthy_ours.fileno())
    thread.join(5)
    assert returned and returned[0] - started < 0.7
    assert healthy.abandoned and not frozen.abandoned
    frozen._hard_at = time.monotonic()  # do not wait out the frozen one's cancel here
    assert frozen.close() is False  # its cancel has not landed: the connection is not reused
    frozen_ours.close()
    frozen_theirs.close()


def test_a_guard_closed_in_time_disarms_everything(pair: tuple[socket.socket, ...]) -> None:
    ours, theirs = pair
    now = time.monotonic()
    cancels: list[int] = []
    guard = Guard(Watchdog(), soft_at=now + 0.2, hard_at=now + 0.4, grace=1.0, cancel=lambda: cancels.append(1),
                  fd=ours.fileno())
    assert guard.close() is True
    time.sleep(0.6)
    assert not cancels and not guard.abandoned
    theirs.sendall(b"x")
    assert ours.recv(1) == b"x"  # the socket still works: nothing shut it down


def test_an_aborted_request_is_cancelled_at_once_and_given_up_after_the_grace(
        pair: tuple[socket.socket, ...]) -> None:
    ours, _ = pair
    abort = Abort()
    token = current_abort.set(abort)
    cancelled = threading.Event()
    try:
        thread, returned = blocked_read(ours)
        now = time.monotonic()
        guard = Guard(Watchdog(), soft_at=now + 30, hard_at=now + 31, grace=0.3, cancel=cancelled.set,
                      fd=ours.fileno())
    finally:
        current_abort.reset(token)
    started = time.monotonic()
    abort.abort()
    assert cancelled.wait(1)
    thread.join(5)
    assert returned and 0.25 <= returned[0] - started < 1.0
    assert guard.abandoned and guard.aborted
    assert guard.close() is False


def test_an_abort_that_came_first_stops_the_statement_as_it_starts(pair: tuple[socket.socket, ...]) -> None:
    ours, _ = pair
    abort = Abort()
    abort.abort()  # the client left while the request waited for its connection
    token = current_abort.set(abort)
    cancelled = threading.Event()
    try:
        now = time.monotonic()
        guard = Guard(Watchdog(), soft_at=now + 30, hard_at=now + 31, grace=0.2, cancel=cancelled.set,
                      fd=ours.fileno())
    finally:
        current_abort.reset(token)
    assert cancelled.wait(1)
    guard.close()


def test_backoff_doubles_with_jitter_up_to_its_bound_and_ends_on_success() -> None:
    backoff = Backoff(maximum=0.8)
    backoff.check("db")  # nothing failed yet
    pauses = []
    for _ in range(6):
        backoff.failed("db")
        retry_at, pause = backoff._state["db"]
        pauses.append(pause)
        assert pause / 2 - 0.01 <= retry_at - time.monotonic() <= pause
    assert pauses == [0.1, 0.2, 0.4, 0.8, 0.8, 0.8]
    with pytest.raises(errors.DatabaseUnavailable) as refused:
        backoff.check("db")
    assert refused.value.headers["Retry-After"] == "1"
    backoff.check("other")  # one target's outage is its own
    backoff.succeeded("db")
    backoff.check("db")
