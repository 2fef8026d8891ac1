"""Prometheus text exposition for the development server, without a client library.

Three families are enough to watch a local deployment and to drive an autoscaler in
tests: requests by route, adapter and status; request latency as a histogram; and
generated tokens by adapter. A few dozen lines keep the serving extra free of another
dependency.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict
from typing import Any

#: Latency buckets in seconds: CPU generation on a small model spans milliseconds to minutes.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

PREFIX = "mtd_serving"


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return ",".join(f'{key}="{escape(value)}"' for key, value in pairs)


class Metrics:
    """Thread-safe counters and one histogram, rendered in Prometheus text format 0.0.4."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[tuple[str, str], ...], int] = defaultdict(int)
        self._tokens: dict[tuple[tuple[str, str], ...], int] = defaultdict(int)
        self._latency_counts: dict[str, list[int]] = {}
        self._latency_sums: dict[str, float] = defaultdict(float)

    def observe_request(self, route: str, adapter: str, status: int, seconds: float) -> None:
        key = (("route", route), ("adapter", adapter), ("status", str(status)))
        with self._lock:
            self._requests[key] += 1
            counts = self._latency_counts.setdefault(route, [0] * (len(BUCKETS) + 1))
            counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self._latency_sums[route] += seconds

    def add_generated_tokens(self, adapter: str, count: int) -> None:
        with self._lock:
            self._tokens[(("adapter", adapter),)] += count

    def render(self) -> str:
        with self._lock:
            lines = [
                f"# HELP {PREFIX}_requests_total Requests by route, adapter and status code.",
                f"# TYPE {PREFIX}_requests_total counter",
            ]
            lines += [
                f"{PREFIX}_requests_total{{{_labels(key)}}} {value}"
                for key, value in sorted(self._requests.items())
            ]
            lines += [
                f"# HELP {PREFIX}_generated_tokens_total Tokens generated, by adapter.",
                f"# TYPE {PREFIX}_generated_tokens_total counter",
            ]
            lines += [
                f"{PREFIX}_generated_tokens_total{{{_labels(key)}}} {value}"
                for key, value in sorted(self._tokens.items())
            ]
            name = f"{PREFIX}_request_duration_seconds"
            lines += [
                f"# HELP {name} Time to the response headers (first event for streams).",
                f"# TYPE {name} histogram",
            ]
            for route, counts in sorted(self._latency_counts.items()):
                cumulative = 0
                for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
                    cumulative += count
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    lines.append(f'{name}_bucket{{route="{route}",le="{le}"}} {cumulative}')
                lines.append(f'{name}_sum{{route="{route}"}} {self._latency_sums[route]}')
                lines.append(f'{name}_count{{route="{route}"}} {cumulative}')
        return "\n".join(lines) + "\n"


class ObserveRequests:
    """ASGI middleware that records each request in `metrics` when its headers go out.

    Plain ASGI rather than Starlette's BaseHTTPMiddleware: that one hides the client's
    disconnect from the route (its `request.is_disconnected()` stays False), and an
    abandoned generation must see it to stop. The route sets the adapter label in
    `scope["state"]["adapter"]`; the router leaves the matched route in `scope["route"]`.
    """

    def __init__(self, app: Any, metrics: Metrics, default_label: str) -> None:
        self.app = app
        self.metrics = metrics
        self.default_label = default_label

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state = scope.setdefault("state", {})
        state["adapter"] = self.default_label
        observed = False

        def observe(status: int) -> None:
            nonlocal observed
            if observed:
                return
            observed = True
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe_request(
                route, state.get("adapter", self.default_label), status, time.perf_counter() - start
            )

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                observe(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            observe(500)
            raise
