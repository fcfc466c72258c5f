"""The watchdog: actions at their deadline, never after disarm, never racing the next statement, and no pile-up of
disarmed entries under load."""

from __future__ import annotations

import threading
import time

from sqlhttp_middleware.watchdog import Watchdog


def test_an_armed_action_runs_at_its_deadline_and_a_disarmed_one_never() -> None:
    watchdog = Watchdog()
    fired: list[str] = []
    done = threading.Event()
    watchdog.arm(time.monotonic() + 0.05, lambda: (fired.append("kept"), done.set()))
    dropped = watchdog.arm(time.monotonic() + 0.02, lambda: fired.append("dropped"))
    watchdog.disarm(dropped)
    assert done.wait(5)
    time.sleep(0.05)
    assert fired == ["kept"]


def test_disarm_waits_for_an_action_under_way() -> None:
    watchdog = Watchdog()
    started, finished = threading.Event(), threading.Event()

    def slow_cancel() -> None:  # a cancel request on its way to the server
        started.set()
        time.sleep(0.2)
        finished.set()

    handle = watchdog.arm(time.monotonic(), slow_cancel)
    assert started.wait(5)
    watchdog.disarm(handle)
    assert finished.is_set()  # the connection is handed back only once the cancel has landed


def test_disarmed_entries_do_not_pile_up() -> None:
    watchdog = Watchdog()
    for _ in range(10_000):  # every request arms a 30 s deadline and disarms it a moment later
        watchdog.disarm(watchdog.arm(time.monotonic() + 30, lambda: None))
    assert len(watchdog._heap) <= 64 + 2
    assert not watchdog._live
