"""The time both drivers stamp conditions and Events with (the core takes it as `now`)."""

from __future__ import annotations

import datetime as dt


def now_rfc3339() -> str:
    """Now, in UTC, to the second, as Kubernetes writes times (`2026-12-07T13:45:00Z`)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
