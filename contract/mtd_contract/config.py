"""The self-contained documents the trainer runs from.

The operator (or `mtd run`) renders one of these (typed) and writes it as JSON; the Job
runs `mtd step VERB --config FILE` (pod.py), which starts `python -m mtd_trainer VERB
--config FILE`. The trainer never imports the operator: it reads these same models,
validated on load so a bad config fails before any model is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .tasks import DEFAULT_METRIC, METRICS, Metric, TaskType

#: Tokens per training example unless the spec says otherwise (training.maxSeqLength).
DEFAULT_MAX_SEQ_LENGTH = 512


#: What a step that writes a served adapter (train, compose) pads its rank to: one field
#: for both, so the trainer pads alike whichever step wrote the adapter.
ServedRanks = Annotated[
    list[int] | None,
    Field(
        description="LoRA ranks the serving engine has kernels for (TGI); a served adapter "
        "of another rank is zero-padded to the next one (exact)."
    ),
]


class ConfigError(ValueError):
    """A config file that cannot be run; the message names the file and the field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskConfig(Strict):
    """One task as the trainer needs it: prompt pieces, label set, data files."""

    name: str
    type: TaskType
    instruction: str
    labels: list[str] | None = None
    ordinal: bool = False
    metric: Metric
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


class CgcConfig(Strict):
    """CGC-LoRA experts per adapted layer: shared by the group's tasks, and per task."""

    common_experts: int = Field(default=2, ge=0)
    specific_experts: int = Field(default=2, ge=0)
    expert_rank: int = Field(default=4, ge=1)

    @model_validator(mode="after")
    def _some_expert(self) -> CgcConfig:
        if self.common_experts + self.specific_experts < 1:
            raise ValueError("cgc: common_experts + specific_experts must be at least 1")
        return self


class Hyperparameters(Strict):
    max_steps: int = Field(ge=1)
    batch_size: int = Field(default=8, ge=1)
    batch_is_global: bool = Field(
        default=False,
        description="batch_size is the whole micro-batch of all data-parallel processes, "
        "split among them (so N processes give one process's result); otherwise each "
        "process takes batch_size examples.",
    )
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=2e-4, gt=0)
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    max_seq_length: int = Field(default=DEFAULT_MAX_SEQ_LENGTH, ge=16)
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
    method: Literal["lora", "full", "cgcLora"] = "lora"
    lora: LoraConfig = Field(
        default_factory=LoraConfig,
        description="LoRA settings; under cgcLora its alpha, dropout and target_modules.",
    )
    cgc: CgcConfig | None = Field(default=None, description="Experts, for method cgcLora.")
    tasks: list[TaskConfig] = Field(min_length=1)
    sampling: SamplingConfig
    hyperparameters: Hyperparameters
    init_adapter: str | None = Field(
        default=None,
        description="Adapter (full model for method full, cgc/ folder for cgcLora) to start from.",
    )
    quantization: Literal["none", "nf4"] = Field(
        default="none",
        description="nf4: the frozen base is loaded in 4-bit NF4 (QLoRA; CUDA and "
        "bitsandbytes); the adapter is an ordinary LoRA adapter. Not with method full.",
    )
    strategy: Literal["ddp", "fsdp"] = Field(
        default="ddp",
        description="With several processes: ddp (each holds the whole model) or fsdp "
        "(parameters, gradients and optimizer state sharded among them; lora or full).",
    )
    output_dir: str = Field(description="Where the adapter/model, metrics and result go.")
    served_ranks: ServedRanks = None

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
        if (self.method == "cgcLora") != (self.cgc is not None):
            raise ValueError("cgc: give it exactly when method is cgcLora")
        if self.quantization == "nf4" and self.method == "full":
            raise ValueError("quantization: nf4 freezes a 4-bit base; method full trains it")
        if self.strategy == "fsdp" and self.method == "cgcLora":
            raise ValueError("strategy: fsdp shards lora and full; cgcLora trains with ddp")
        return self


class EngineScoring(Strict):
    """Score through the serving engine: every eval example is asked as the task gateway
    asks it (same prompt, same guided choice of labels), so a score describes the answers
    users get. The engine already holds the step's adapters under the names given here."""

    url: str = Field(description="The engine's OpenAI-compatible base URL (vLLM).")
    base_model: str = Field(description="The engine's id of its base (or full) model.")
    adapters: dict[str, str | None] = Field(
        description="Per task, the engine's name for its adapter (None: the base model)."
    )
    api_key_file: str | None = Field(
        default=None, description="A file holding the engine's API key (a bearer token)."
    )
    concurrency: int = Field(default=16, ge=1, description="Requests in flight at once.")
    ready_timeout_s: float = Field(
        default=0,
        ge=0,
        description="How long to wait for the engine's /health to answer 200 before scoring "
        "(an engine started beside the evaluation, in its pod, is still loading).",
    )


class EvalConfig(Strict):
    """Score every task of a group with one adapter (or the base model)."""

    kind: Literal["evaluate"] = "evaluate"
    run_name: str
    base_model: str
    adapter: str | None = Field(default=None, description="Adapter or full-model folder.")
    task_adapters: dict[str, str] = Field(
        default_factory=dict,
        description="Per task, an adapter used instead of `adapter` (CGC-LoRA's per-task "
        "exports, a composition's adapter).",
    )
    tasks: list[TaskConfig] = Field(min_length=1)
    max_examples: int | None = Field(
        default=None, ge=1, description="Evaluate at most this many examples per task."
    )
    max_new_tokens: int = Field(default=64, ge=1)
    max_seq_length: int = Field(default=DEFAULT_MAX_SEQ_LENGTH, ge=16)
    batch_size: int = Field(default=8, ge=1)
    output_path: str = Field(description="The results JSON file to write.")
    engine: EngineScoring | None = Field(
        default=None,
        description="Score through this serving engine; None: the trainer scores in process "
        "(label likelihood, greedy generate).",
    )

    @model_validator(mode="after")
    def _task_adapters_name_tasks(self) -> EvalConfig:
        names = {task.name for task in self.tasks}
        unknown = set(self.task_adapters) - names
        if unknown:
            raise ValueError(f"task_adapters: {sorted(unknown)} are not tasks of this config")
        if self.engine is not None and set(self.engine.adapters) != names:
            raise ValueError(
                f"engine.adapters: names {sorted(self.engine.adapters)}, but the tasks are "
                f"{sorted(names)}"
            )
        return self

    def adapter_of(self, task: str) -> str | None:
        """The adapter (or full-model folder) that answers `task`; None: the base model."""
        return self.task_adapters.get(task, self.adapter)


class AdapterRef(Strict):
    path: str = Field(description="A peft LoRA adapter folder.")
    weight: float = 1.0


class MergeConfig(Strict):
    """How peft's add_weighted_adapter combines the adapters."""

    method: Literal["linear", "cat", "ties"] = "linear"
    density: float = Field(default=0.5, gt=0, le=1, description="Kept fraction, for ties.")


class CalibrationConfig(Strict):
    """Learnable Calibration: a low-rank correction trained on compositional data."""

    train_path: str = Field(description="JSON Lines compositional examples (input, output).")
    instruction: str
    type: TaskType = "generation"
    labels: list[str] | None = None
    rank: int = Field(default=4, ge=1)
    max_steps: int = Field(default=50, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=8, ge=1)
    max_seq_length: int = Field(default=DEFAULT_MAX_SEQ_LENGTH, ge=16)
    seed: int = 0

    def task(self) -> TaskConfig:
        """The prompt format of the composed task (as evaluation and serving use it)."""
        return TaskConfig(
            name="calibration",
            type=self.type,
            instruction=self.instruction,
            labels=self.labels,
            metric=DEFAULT_METRIC[self.type],
            train_path=self.train_path,
        )


class ComposeConfig(Strict):
    """Merge task adapters into one, optionally calibrated; the result is one adapter."""

    kind: Literal["compose"] = "compose"
    run_name: str
    base_model: str
    adapters: list[AdapterRef] = Field(min_length=2)
    merge: MergeConfig = Field(default_factory=MergeConfig)
    calibration: CalibrationConfig | None = None
    output_dir: str = Field(description="Gets adapter/ and result.json.")
    served_ranks: ServedRanks = None

    @model_validator(mode="after")
    def _calibration_task(self) -> ComposeConfig:
        if self.calibration is not None:
            self.calibration.task()  # labels fit the type
        return self


AnyConfig = TrainConfig | EvalConfig | ComposeConfig
KINDS: dict[str, type[AnyConfig]] = {
    "train": TrainConfig,
    "evaluate": EvalConfig,
    "compose": ComposeConfig,
}


def load_config(path: str | Path, default_kind: str = "train") -> AnyConfig:
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
    model = KINDS.get(kind)
    if model is None:
        raise ConfigError(f"{path}: kind {kind!r} is unknown; allowed: {', '.join(KINDS)}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"{path}: {'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError("\n".join(lines)) from exc
