"""Poll until something holds: the tests watch other processes and threads change state."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    logs: Callable[[], str] = lambda: "",
    every: float = 0.1,
) -> T:
    """The first truthy value of `predicate`; after `timeout` seconds an AssertionError
    naming `what`, with `logs()` (e.g. the tail of a process's log) to say why."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}\n{logs()}")
