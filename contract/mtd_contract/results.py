"""What a step hands back: typed results, read by the operator and by `mtd run`.

The trainer writes one JSON file per step (`result_file`); the Job's entrypoint checks it
against these models before publishing it, and the operator parses what it reads with
the same models. Fields the operator does not use are kept (`extra="allow"`), so a
trainer that reports more does not break an older operator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import AnyConfig, EvalConfig
from .layout import RESULT_FILE


class Result(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    files: dict[str, str] = Field(
        default_factory=dict,
        description="sha256 of every file the step produced, by path relative to the "
        "result file's folder (mtd_contract.digests): checked before reuse and serving.",
    )
    digest: str | None = Field(
        default=None, description="sha256 of this result's own canonical JSON, without it."
    )


class TrainResult(Result):
    """A training run's result.json."""

    run_name: str
    method: str
    steps: int = Field(ge=0)
    artifact: str = Field(description="The adapter (or model) folder.")
    adapters: dict[str, str] | None = Field(
        default=None, description="CGC-LoRA: each task's exported adapter."
    )
    saturation_step: int | None = None
    prompt_format: Literal["chat", "plain"] = Field(
        default="chat",
        description="chat: the tokenizer's chat template; plain: the contract's plain prompt "
        "(a tokenizer without a template). Serving sends the same (mtd_contract.upstream).",
    )


class TaskScore(Result):
    score: float | None = None
    metric: str | None = None
    examples: int | None = None
    per_example: dict[str, Any] | None = Field(
        default=None,
        description="What each example contributed to the score (labels, values or chrF "
        "statistics), for the operator's paired-bootstrap confidence interval.",
    )


class EvalResult(Result):
    """An evaluation's results file: one row per task."""

    run_name: str | None = None
    tasks: dict[str, TaskScore]
    scored: dict[str, str] = Field(
        default_factory=dict,
        description="Folder (relative to the results file's folder) → digest of each "
        "adapter (or model) scored: the scores hold only while those files are unchanged.",
    )


class ComposeResult(Result):
    """A composition's result.json: the merged (and calibrated) adapter."""

    run_name: str
    merge: str
    rank: int = Field(ge=1)
    artifact: str


class ProfileResult(Result):
    """What `mtd profile` publishes: per task and per composition, its files' profiles."""

    profiles: dict[str, dict[str, Any]]
    compositions: dict[str, dict[str, Any]] = Field(default_factory=dict)


RESULTS: dict[str, type[Result]] = {
    "train": TrainResult,
    "evaluate": EvalResult,
    "compose": ComposeResult,
    "profile": ProfileResult,
}


class ResultError(ValueError):
    """A result that does not match the contract; the message names the field."""


def parse_result(verb: str, raw: object) -> Result:
    """The typed result of `verb`; ResultError when it does not fit."""
    model = RESULTS.get(verb)
    if model is None:
        raise ResultError(f"verb {verb!r} is unknown; allowed: {', '.join(RESULTS)}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ResultError(f"{verb} result: {where}: {first['msg']}") from None


def result_file(config: AnyConfig) -> Path:
    """Where the trainer writes a step's result (last, so its presence means done)."""
    if isinstance(config, EvalConfig):
        return Path(config.output_path)
    return Path(config.output_dir) / RESULT_FILE
