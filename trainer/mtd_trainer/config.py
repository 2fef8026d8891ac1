"""The self-contained documents the trainer runs from.

The operator (or `mtd run`) renders one of these as JSON and starts
`python -m mtd_trainer <verb> --config FILE`. The trainer never imports the operator:
this file is the whole contract, validated on load so a bad config fails before any
model is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A config file that cannot be run; the message names the file and the field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


METRICS = {
    "classification": ("accuracy", "macroF1", "exactMatch"),
    "generation": ("rougeL", "exactMatch", "chrF"),
}


class TaskConfig(Strict):
    """One task as the trainer needs it: prompt pieces, label set, data files."""

    name: str
    type: Literal["classification", "generation"]
    instruction: str
    labels: list[str] | None = None
    ordinal: bool = False
    metric: Literal["accuracy", "macroF1", "rougeL", "exactMatch", "chrF"]
    train_path: str | None = Field(default=None, description="JSON Lines training data.")
    eval_path: str | None = Field(default=None, description="JSON Lines evaluation data.")

    @model_validator(mode="after")
    def _labels(self) -> TaskConfig:
        if self.type == "classification" and (not self.labels or len(self.labels) < 2):
            raise ValueError(f"task {self.name!r}: classification needs 2+ labels")
        allowed = METRICS[self.type]
        if self.metric not in allowed:
            raise ValueError(
                f"task {self.name!r}: metric {self.metric!r} is not for {self.type}; "
                f"allowed: {', '.join(allowed)}"
            )
        return self


class SamplingConfig(Strict):
    """Per-task sampling rates, as the planner computed them (they sum to 1)."""

    strategy: Literal["instance", "temperature"]
    rates: dict[str, float]
    temperature: float | None = None
    dataset_cap: int | None = None

    @model_validator(mode="after")
    def _normalised(self) -> SamplingConfig:
        if not self.rates:
            raise ValueError("sampling.rates is empty")
        if any(rate < 0 for rate in self.rates.values()):
            raise ValueError("sampling.rates must be non-negative")
        total = sum(self.rates.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"sampling.rates must sum to 1, not {total}")
        return self


class LoraConfig(Strict):
    rank: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["all-linear"])


class Hyperparameters(Strict):
    max_steps: int = Field(ge=1)
    batch_size: int = Field(default=8, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=2e-4, gt=0)
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    max_seq_length: int = Field(default=512, ge=16)
    seed: int = 0
    checkpoint_every: int = Field(default=50, ge=1, description="Steps between checkpoints.")
    log_every: int = Field(default=10, ge=1)
    eval_every: int | None = Field(
        default=None,
        ge=1,
        description="Evaluate at this interval to find the saturation step (baselines).",
    )
    eval_max_examples: int | None = Field(
        default=None, ge=1, description="Examples per task in each interval evaluation."
    )
    eval_max_new_tokens: int = Field(default=64, ge=1)


class TrainConfig(Strict):
    """One training run: a stage of a group, or a single-task baseline."""

    kind: Literal["train"] = "train"
    run_name: str = Field(description="For logs and metrics, e.g. 'support/binary/stage2'.")
    base_model: str = Field(description="A local model folder or hf://ORG/NAME.")
    method: Literal["lora", "full"] = "lora"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    tasks: list[TaskConfig] = Field(min_length=1)
    sampling: SamplingConfig
    hyperparameters: Hyperparameters
    init_adapter: str | None = Field(
        default=None, description="Adapter (or full model, for method full) to start from."
    )
    output_dir: str = Field(description="Where the adapter/model, metrics and result go.")

    @model_validator(mode="after")
    def _rates_cover_tasks(self) -> TrainConfig:
        names = {task.name for task in self.tasks}
        if set(self.sampling.rates) != names:
            raise ValueError(
                f"sampling.rates keys {sorted(self.sampling.rates)} must equal the tasks "
                f"{sorted(names)}"
            )
        missing = [task.name for task in self.tasks if not task.train_path]
        if missing:
            raise ValueError(f"tasks without train_path: {missing}")
        return self


class EvalConfig(Strict):
    """Score every task of a group with one adapter (or the base model)."""

    kind: Literal["evaluate"] = "evaluate"
    run_name: str
    base_model: str
    adapter: str | None = Field(default=None, description="Adapter or full-model folder.")
    tasks: list[TaskConfig] = Field(min_length=1)
    max_examples: int | None = Field(
        default=None, ge=1, description="Evaluate at most this many examples per task."
    )
    max_new_tokens: int = Field(default=64, ge=1)
    max_seq_length: int = Field(default=512, ge=16)
    batch_size: int = Field(default=8, ge=1)
    output_path: str = Field(description="The results JSON file to write.")


def load_config(path: str | Path, default_kind: str = "train") -> TrainConfig | EvalConfig:
    """Read and validate a config file; errors name the file and the field."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a JSON document: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    kind = raw.get("kind", default_kind)
    model = {"train": TrainConfig, "evaluate": EvalConfig}.get(kind)
    if model is None:
        raise ConfigError(f"{path}: kind {kind!r} is unknown; allowed: train, evaluate")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"{path}: {'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError("\n".join(lines)) from exc
