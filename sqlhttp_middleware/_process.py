"""The current process id, without a system call per request.

glibc does not cache ``getpid()``, and on a virtual machine a system call costs microseconds; the request path
asks "have we forked since?" several times per request. The id is re-read in a child right after ``fork()``.
"""

from __future__ import annotations

import os

__all__ = ["current_pid"]

_pid = os.getpid()


def current_pid() -> int:
    return _pid


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)
