"""What a driver observed, in the core's terms: one state per step, and the serving."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Phase = Literal["Running", "Succeeded", "Failed"]


@dataclass(frozen=True)
class StepState:
    """What a driver saw of one step (a Job, or a local process and its files)."""

    phase: Phase
    # Failed: why. Running: why its pods cannot start (empty while they run normally).
    message: str = ""
    attempts: int = 0
    result: dict[str, Any] | None = None  # the trainer's result (train) or scores (evaluate)


@dataclass(frozen=True)
class ServingObservation:
    revision: str | None
    ready: bool
    ready_replicas: int = 0
    message: str = ""
    endpoint: str | None = None
    # The server is gone for good (a local `mtd run` that ended): nothing serves until
    # the next run, whatever was served before.
    stopped: bool = False


def succeeded(states: Mapping[str, StepState], key: str) -> bool:
    return key in states and states[key].phase == "Succeeded"
