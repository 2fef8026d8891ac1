"""Exit codes and the termination message: how a Job's pod tells the operator what happened.

Exit 2 means the input cannot work (config, data, model or adapter): retrying cannot
help, so the operator's Jobs fail at once on it (a `podFailurePolicy` rule with
`FailJob`). Exit 1 is anything else, retried up to `backoffLimit`. The message a pod
writes to its termination log reaches the failing step's condition and an Event.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2

TERMINATION_LOG = Path("/dev/termination-log")
TERMINATION_PATH_ENV = "TERMINATION_MESSAGE_PATH"
# Kubernetes keeps 4096 bytes of a container's termination message (api/core/v1 types:
# "will be truncated by the node if greater than 4096 bytes").
TERMINATION_LIMIT = 4096


def termination_log() -> Path | None:
    """The file to write: $TERMINATION_MESSAGE_PATH, else /dev/termination-log when it is
    writable (in a pod), else None (a local run has none)."""
    configured = os.environ.get(TERMINATION_PATH_ENV)
    if configured:
        path = Path(configured)
        return path if path.parent.is_dir() else None
    if TERMINATION_LOG.exists() and os.access(TERMINATION_LOG, os.W_OK):
        return TERMINATION_LOG
    return None


def fit_termination(text: str) -> str:
    """`text` cut to what Kubernetes keeps, on a character boundary."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= TERMINATION_LIMIT:
        return text
    return data[:TERMINATION_LIMIT].decode("utf-8", errors="ignore")


def write_termination(text: str, path: Path | None = None) -> None:
    """Best effort: a pod that cannot write its message still exits with its code."""
    path = path if path is not None else termination_log()
    if path is not None:
        with contextlib.suppress(OSError):
            path.write_text(fit_termination(text), encoding="utf-8")
