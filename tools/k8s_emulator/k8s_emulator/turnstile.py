"""``Turnstile``: the test lets the cluster's own changes through one at a time.

A JobRunner (a Job's pod starting, a Job ending) and a DeploymentController (a rollout
status) change the world on their own schedule, so what an operator sees between two of
its passes depends on timing: two Jobs may end within one pass, or one pass may see a
Job start that another run never shows. Given a turnstile, each of those writes first
waits at it, named ``(kind, key)``, until the test lets exactly that write through::

    gate = Turnstile()
    runner = JobRunner(emu, gate=gate)
    gate.wait_arrival("job-end", "ns/job", timeout=10)  # the pod has exited
    gate.let_through("job-end", "ns/job")  # returns once the Job status is written

Kinds: ``job-start`` (status.active=1, before the pod runs), ``job-end`` (Complete or
Failed), ``job-retry`` (a failed attempt that will be retried), ``rollout`` (a Deployment
status write). ``open()`` lets everything through from then on (call it before stopping
the actors, so no thread stays parked).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

Passage = tuple[str, str]  # (kind, key)


class Turnstile:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: Counter[Passage] = Counter()
        self._permits: Counter[Passage] = Counter()
        self._done: Counter[Passage] = Counter()
        self._open = False
        self.passed: list[Passage] = []  # in the order they went through

    # -- the actors' side ------------------------------------------------------------

    @contextmanager
    def __call__(self, kind: str, key: str) -> Iterator[None]:
        """Wait for a permit for ``(kind, key)``, then run the body (the write)."""
        item = (kind, key)
        with self._cond:
            self._waiting[item] += 1
            self._cond.notify_all()
            while not self._open and self._permits[item] == 0:
                self._cond.wait()
            if self._permits[item]:
                self._permits[item] -= 1
            self._waiting[item] -= 1
            self.passed.append(item)
        try:
            yield
        finally:
            with self._cond:
                self._done[item] += 1
                self._cond.notify_all()

    # -- the test's side -------------------------------------------------------------

    def waiting(self) -> list[Passage]:
        """The writes parked at the turnstile now, sorted."""
        with self._cond:
            return sorted(item for item, n in self._waiting.items() if n > 0)

    def wait_arrival(self, kind: str, key: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._waiting[(kind, key)] == 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def let_through(self, kind: str, key: str, timeout: float = 30.0) -> None:
        """Let one parked ``(kind, key)`` write through; return when it is written."""
        item = (kind, key)
        if not self.wait_arrival(kind, key, timeout):
            raise TimeoutError(f"nothing arrived at the turnstile as {item}")
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._done[item] + 1
            self._permits[item] += 1
            self._cond.notify_all()
            while self._done[item] < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{item} was let through but did not finish")
                self._cond.wait(left)

    def open(self) -> None:
        """Let every write through from now on, parked or future."""
        with self._cond:
            self._open = True
            self._cond.notify_all()
