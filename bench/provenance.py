"""Where a benchmark figure came from: versions, machine, and earlier invocations."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "peft", "accelerate", "datasets"):
        try:
            out[dist] = version(dist)
        except Exception:  # pragma: no cover
            out[dist] = "?"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=ROOT).stdout.strip()  # fmt: skip
        local = subprocess.run(
            ["git", "status", "--porcelain", "--", "bench"],
            capture_output=True, text=True, cwd=ROOT,
        ).stdout.strip()  # fmt: skip
        out["git"] = f"{commit} + uncommitted changes to bench/" if local else commit
    except OSError:  # pragma: no cover
        pass
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:  # pragma: no cover
        pass
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        threads = None
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "torch_threads": threads,
    }


def previous_invocations(path: Path, command: str) -> list[dict[str, Any]]:
    """Earlier runs of the same command into this folder (they made the reused artifacts).

    Empty when the folder holds no report of this command, or one without an invocation
    record (every committed single-seed report has one)."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if old.get("command") != command:
        return []
    return list(old.get("invocations", []))
