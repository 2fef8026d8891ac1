"""Fault injection: make chosen requests fail, or cut watch streams, on purpose.

Reliability tests (issue 9) must show that the operator survives 409/429/5xx answers and
broken watch streams. The rules are explicit "next N matching requests" counters rather
than kmock's history-based slices, so that a test can arm a fault at any moment and know
exactly which later requests it hits.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field


@dataclass
class Fault:
    """One armed rule. ``remaining`` counts down; ``hits`` records matched paths."""

    method: str | None
    path: re.Pattern[str]
    status: int | None = None
    message: str | None = None
    retry_after: int | None = None
    remaining: int = 1
    watch: bool | None = None
    cut_after: int | None = None  # for watch streams: close after this many events
    hits: list[str] = field(default_factory=list)

    @property
    def exhausted(self) -> bool:
        return self.remaining <= 0

    def matches(self, method: str, path_qs: str, is_watch: bool) -> bool:
        if self.exhausted:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        if self.watch is not None and self.watch != is_watch:
            return False
        return bool(self.path.search(path_qs))


class FaultBook:
    """The armed faults; thread-safe because tests arm them from the test thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path_qs: str, is_watch: bool, *, cut: bool) -> Fault | None:
        """Consume one use of the first matching fault of the given family (error or cut)."""
        with self._lock:
            for fault in self._faults:
                if (fault.cut_after is not None) != cut:
                    continue
                if fault.matches(method, path_qs, is_watch):
                    fault.remaining -= 1
                    fault.hits.append(f"{method} {path_qs}")
                    return fault
        return None

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)
