"""The `MultiTaskDeployment` spec: the one definition of the API.

Everything else (the CRD in `crds/`, the chart, the examples, the planner) is derived
from or checked against these models. Field names are camelCase on the wire (Kubernetes
API conventions) and snake_case in Python.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from mtd_contract.config import DEFAULT_MAX_SEQ_LENGTH
from mtd_contract.limits import MAX_INSTRUCTION_CHARS, MAX_LABEL_CHARS, MAX_LABELS
from mtd_contract.tasks import (
    CLASSIFICATION_METRICS,
    GENERATION_METRICS,
    Metric,
    TaskType,
    default_metric,
)

from ..engines import engine_of
from .grouping import RESERVED_ADAPTER_NAMES, RESERVED_ADAPTER_PREFIXES, group_tasks

API_GROUP = "multitask.dev"
API_VERSION = "v1alpha1"
KIND = "MultiTaskDeployment"
PLURAL = "multitaskdeployments"
SINGULAR = "multitaskdeployment"
SHORT_NAMES = ["mtd"]

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS1123_RE = re.compile(DNS1123_LABEL)
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

BASE_MODEL_SCHEMES = ("pvc://", "hf://", "/", "./", "../")
#: Upper bounds: far above any real run, low enough that arithmetic on them stays cheap
#: and a typo (an exponent too many) is caught by validation, not by a week of training.
MAX_STEPS = 1_000_000
MAX_EXAMPLES = 1_000_000_000
MAX_BATCH_SIZE = 4096
MAX_TEXT_CHARS = MAX_INSTRUCTION_CHARS
MAX_PATH_CHARS = 4096

Label = Annotated[str, Field(max_length=MAX_LABEL_CHARS)]


class ApiModel(BaseModel):
    """Base for every API object: camelCase aliases, unknown fields rejected, strict types.

    Strict: `maxSteps: true` is not 1 step and `ordinal: "yes"` is not true; a number
    where a number is expected, a boolean where a boolean is (an integer still fits a
    float field)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        strict=True,
    )

    def to_api(self) -> dict:
        """The wire form (camelCase, defaults included, unset optionals left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _check_outputs(type_: str, labels: list[str] | None, ordinal: bool, metric: str | None) -> None:
    """Labels and metric fit the output type (shared by tasks and compositions)."""
    if type_ == "classification":
        if labels is None or len(labels) < 2:
            raise ValueError("a classification task needs 'labels' with 2 or more entries")
        if ordinal and len(labels) < 3:
            raise ValueError(
                "'ordinal: true' needs 3 or more labels (2 labels are binary, whatever "
                "their order); remove 'ordinal' or add labels"
            )
        if any(not label.strip() for label in labels):
            raise ValueError("labels must be non-empty strings")
        duplicates = sorted({lab for lab in labels if labels.count(lab) > 1})
        if duplicates:
            raise ValueError(f"labels must be distinct; repeated: {duplicates}")
        if metric is not None and metric not in CLASSIFICATION_METRICS:
            raise ValueError(
                f"metric {metric!r} is not for classification; allowed: "
                f"{', '.join(CLASSIFICATION_METRICS)}"
            )
    else:
        if labels is not None:
            raise ValueError("'labels' is only allowed on classification tasks")
        if ordinal:
            raise ValueError("'ordinal' is only allowed on classification tasks")
        if metric is not None and metric not in GENERATION_METRICS:
            raise ValueError(
                f"metric {metric!r} is not for generation; allowed: {', '.join(GENERATION_METRICS)}"
            )


class SecretKeyRef(ApiModel):
    """A key of a Secret in the resource's namespace."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="The Secret's name.",
    )
    key: str = Field(default="token", min_length=1, description="The key holding the value.")


# huggingface_hub.utils.validate_repo_id's rules for a repository id (the operator image
# has no huggingface_hub; tests/core/test_hub_ids.py compares the two).
_HUB_REPO_ID = re.compile(r"(\b[\w\-.]{1,96}\b/)?\b[\w\-.]{1,96}\b", re.ASCII)


def _is_hub_repo_id(repo: str) -> bool:
    return (
        bool(_HUB_REPO_ID.fullmatch(repo))
        and ".." not in repo
        and "--" not in repo
        and not repo.endswith(".git")
    )


class BaseModelRef(ApiModel):
    """Where the frozen base LLM comes from."""

    uri: str = Field(
        min_length=1,
        max_length=MAX_PATH_CHARS,
        description=(
            "The base model: a path (absolute, or relative to the spec file when run "
            "locally / to the workspace volume on a cluster), pvc://CLAIM/PATH, or "
            "hf://ORG/NAME for a Hugging Face Hub id."
        ),
    )
    token_secret: SecretKeyRef | None = Field(
        default=None,
        description="hf:// only: a Secret key holding a Hugging Face token, for gated or "
        "private models. On a cluster one Job downloads the model into the workspace "
        "volume with it; every other pod reads that copy offline.",
    )

    @model_validator(mode="after")
    def _token_for_hub_only(self) -> BaseModelRef:
        if self.token_secret is not None and not self.uri.startswith("hf://"):
            raise ValueError(
                f"tokenSecret: only for hf:// models, not {self.uri!r} (a path or pvc:// "
                "needs no token)"
            )
        return self

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        if "://" in uri and not uri.startswith(("pvc://", "hf://")):
            raise ValueError(
                f"unsupported scheme in {uri!r}; allowed: a path, pvc://CLAIM/PATH, hf://ORG/NAME"
            )
        if uri.startswith("pvc://") and len(uri.removeprefix("pvc://").split("/", 1)) < 2:
            raise ValueError(f"{uri!r} must name a claim and a path: pvc://CLAIM/PATH")
        if uri.startswith("hf://") and not uri.removeprefix("hf://").strip("/"):
            raise ValueError(f"{uri!r} must name a repository: hf://ORG/NAME")
        if uri.startswith("hf://") and not _is_hub_repo_id(uri.removeprefix("hf://").rstrip("/")):
            # It becomes a path on the workspace volume (models/hf/ORG/NAME): an id with
            # '..' would leave it.
            raise ValueError(
                f"{uri!r}: hf:// takes a Hub repository id, NAME or ORG/NAME (letters, "
                "digits, '-', '_' and '.', each part starting and ending with a letter, digit "
                "or '_', no '..' or '--', not ending in .git, at most 96 characters each)"
            )
        return uri


class TaskData(ApiModel):
    """JSON Lines files, one example a line: {"input": ..., "output": ...}."""

    train: str = Field(
        min_length=1, max_length=MAX_PATH_CHARS, description="Training examples (JSON Lines)."
    )
    eval: str | None = Field(
        default=None,
        max_length=MAX_PATH_CHARS,
        description="Held-out examples for evaluation (JSON Lines). Without it the task "
        "cannot be scored, so it can never be qualified.",
    )


class Baseline(ApiModel):
    """The single-task reference a task's multi-task score is compared with."""

    score: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="A known single-task score on the task's metric, in (0, 1].",
    )
    train: bool | None = Field(
        default=None,
        description="Measure the baseline by training a single-task adapter on this task.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Baseline:
        if (self.score is None) == (not self.train):
            raise ValueError("give exactly one of 'score' (a number in (0, 1]) or 'train: true'")
        return self


class TaskSpec(ApiModel):
    """One NLP task: what it is, its data, how it is scored."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS1123_LABEL,
        description="Unique task name (a DNS-1123 label); also the serving adapter id.",
    )
    type: TaskType = Field(description="classification (fixed label set) or generation.")
    labels: list[Label] | None = Field(
        default=None,
        max_length=MAX_LABELS,
        description="classification only: the label set, 2 or more distinct strings.",
    )
    ordinal: bool = Field(
        default=False,
        description="classification only: the labels are ordered (listed low to high); "
        "needs 3 or more labels.",
    )
    instruction: str = Field(
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        description="The instruction put before each input in the prompt.",
    )
    data: TaskData
    metric: Metric | None = Field(
        default=None,
        description="Score used for qualification. Default: accuracy for classification, "
        "rougeL for generation.",
    )
    resource: Literal["auto", "high", "low"] = Field(
        default="auto",
        description="high-resource tasks train in stage 1 too; auto decides by "
        "training.highResourceMinExamples.",
    )
    baseline: Baseline | None = Field(
        default=None,
        description="The single-task reference. Without it the task is trained and served "
        "but not qualified.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        _check_outputs(self.type, self.labels, self.ordinal, self.metric)
        return self

    @model_validator(mode="after")
    def _baseline_needs_eval(self) -> TaskSpec:
        if self.baseline is not None and self.data.eval is None:
            raise ValueError("a baseline is compared on held-out data: set data.eval too")
        return self

    @property
    def effective_metric(self) -> str:
        return default_metric(self.type, self.metric)


class Filtering(ApiModel):
    """How tasks are split into groups that are trained together."""

    strategy: Literal["none", "taskType", "taxonomy"] = Field(
        default="taxonomy",
        description="none: one group; taskType: generation vs classification; taxonomy: "
        "generation, binary, ordinal and multiclass.",
    )
    isolate: list[str] = Field(
        default_factory=list,
        description="Tasks left out of multi-task training: each is trained alone in "
        "its own group (too dissimilar to share an adapter).",
    )


class Stage1(ApiModel):
    max_steps: int = Field(
        default=200, ge=1, le=MAX_STEPS, description="Optimizer steps of stage 1."
    )


class Stage2(ApiModel):
    temperature: float = Field(
        default=2.0,
        ge=1.0,
        le=1000.0,
        description="Sampling temperature τ: rates ∝ min(e, K)^(1/τ); 1 is capped "
        "instance-balanced, large is uniform over tasks.",
    )
    dataset_cap: int = Field(
        default=10000,
        ge=1,
        le=MAX_EXAMPLES,
        description="Artificial dataset-size cap K for the rates.",
    )
    max_steps: int = Field(
        default=200, ge=1, le=MAX_STEPS, description="Optimizer steps of stage 2."
    )


class BaselineTraining(ApiModel):
    max_steps: int = Field(
        default=200,
        ge=1,
        le=MAX_STEPS,
        description="Optimizer steps of each single-task baseline run.",
    )


class LoraSettings(ApiModel):
    rank: int = Field(default=16, ge=1, le=1024, description="LoRA rank r.")
    alpha: int = Field(default=32, ge=1, le=65536, description="LoRA scaling α (scale = α / r).")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=lambda: ["all-linear"],
        min_length=1,
        max_length=256,
        description="Module names to adapt; all-linear adapts every linear layer but the "
        "output head.",
    )


class CgcLoraSettings(ApiModel):
    """CGC-LoRA (arXiv 2402.01684): per adapted layer, experts shared by the group's
    tasks and experts of each task, mixed by a gate chosen by the task id. Each task's
    mixture is exported as one ordinary LoRA adapter of rank
    (commonExperts + specificExperts) × expertRank, served under the task's name."""

    common_experts: int = Field(default=2, ge=0, le=64, description="Experts shared by all tasks.")
    specific_experts: int = Field(default=2, ge=0, le=64, description="Experts of each task.")
    expert_rank: int = Field(default=4, ge=1, le=256, description="LoRA rank of each expert.")

    @model_validator(mode="after")
    def _some_expert(self) -> CgcLoraSettings:
        if self.common_experts + self.specific_experts < 1:
            raise ValueError("commonExperts + specificExperts must be at least 1")
        return self


QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"


class TrainingResources(ApiModel):
    """What each training step's pods get, overriding the chart's trainer defaults for
    this resource. With nodes > 1 a step is an Indexed Job of that many pods that
    rendezvous with torchrun (docs/trainer.md, "Several nodes")."""

    gpus_per_node: int | None = Field(
        default=None,
        ge=0,
        le=64,
        strict=True,
        description="GPUs per pod; unset: the chart's trainer.gpus.",
    )
    nodes: int = Field(
        default=1, ge=1, le=256, strict=True, description="Pods (nodes) per training step."
    )
    cpu: str | None = Field(
        default=None, pattern=QUANTITY, description="CPU request per pod (e.g. 8, 500m)."
    )
    memory: str | None = Field(
        default=None, pattern=QUANTITY, description="Memory request per pod (e.g. 64Gi)."
    )
    strategy: Literal["ddp", "fsdp"] = Field(
        default="ddp",
        description="ddp: every process holds the whole model (data parallel). fsdp: "
        "parameters, gradients and optimizer state are sharded among all processes "
        "(FSDP2), for models that do not fit one GPU; methods lora and full.",
    )


class Training(ApiModel):
    method: Literal["lora", "full", "cgcLora"] = Field(
        default="lora",
        description="lora: one adapter per group on a frozen base; full: all weights; "
        "cgcLora: task-gated LoRA experts, one exported adapter per task.",
    )
    high_resource_min_examples: int = Field(
        default=5000,
        ge=1,
        le=MAX_EXAMPLES,
        description="With resource: auto, a task with at least this many training examples "
        "is high-resource.",
    )
    stage1: Stage1 = Field(default_factory=Stage1)
    stage2: Stage2 = Field(default_factory=Stage2)
    baseline: BaselineTraining = Field(default_factory=BaselineTraining)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    cgc_lora: CgcLoraSettings = Field(
        default_factory=CgcLoraSettings,
        description="Experts for method cgcLora (lora.alpha, dropout and targetModules apply).",
    )
    batch_size: int = Field(
        default=8, ge=1, le=MAX_BATCH_SIZE, description="Examples per optimizer step."
    )
    learning_rate: float = Field(default=2e-4, gt=0, le=1, description="Peak learning rate.")
    max_seq_length: int = Field(
        default=DEFAULT_MAX_SEQ_LENGTH,
        ge=16,
        le=131072,
        description="Longer examples are truncated from the left.",
    )
    seed: int = Field(
        default=0, ge=0, le=2**32 - 1, description="Seed for sampling and initialisation."
    )
    quantization: Literal["none", "nf4"] = Field(
        default="none",
        description="nf4: load the frozen base in 4-bit NF4 to train LoRA on it (QLoRA; "
        "needs CUDA and bitsandbytes in the trainer image). The exported adapter is an "
        "ordinary LoRA adapter, served on the unquantized base (docs/trainer.md).",
    )
    resources: TrainingResources = Field(
        default_factory=TrainingResources,
        description="Pods, GPUs, CPU and memory of training steps (chart defaults otherwise).",
    )


class Qualification(ApiModel):
    threshold: float = Field(
        default=0.99,
        gt=0,
        le=2,
        description="A task is qualified when score / baseline reaches this ratio.",
    )
    confidence: float = Field(
        default=0.9,
        ge=0,
        lt=1,
        description="Confidence of the ratio's paired-bootstrap interval: a task is "
        "Qualified when the interval's low end reaches the threshold, NotQualified when its "
        "high end stays below, Inconclusive otherwise. 0: the point ratio alone decides.",
    )
    min_eval_examples: int = Field(
        default=100,
        ge=1,
        le=1_000_000,
        description="With fewer eval examples a task's verdict is Inconclusive whatever its "
        "interval (a bootstrap of a few examples proves nothing). Ignored when confidence is 0.",
    )
    serve_baseline_for_unqualified: bool = Field(
        default=True,
        description="Serve a NotQualified task from its single-task baseline adapter when "
        "one was trained.",
    )
    serve_baseline_for_inconclusive: bool = Field(
        default=False,
        description="Also serve an Inconclusive task from its baseline adapter (with "
        "serveBaselineForUnqualified); by default it stays on the multi-task adapter.",
    )


class Serving(ApiModel):
    engine: Literal["vllm", "tgi"] = Field(
        default="vllm",
        description="Serving engine: vllm (default; loads new adapters at run time) or tgi "
        "(in maintenance mode upstream; loads adapters at start-up only).",
    )
    replicas: int = Field(default=1, ge=0, le=100, description="Serving replicas.")
    rollout: Literal["surge", "oneAtATime"] = Field(
        default="surge",
        description="How serving pods are replaced when their template changes (for TGI, "
        "every new adapter set): surge starts a new pod before stopping an old one (needs "
        "a spare GPU); oneAtATime stops one old pod before starting its replacement (no "
        "spare GPU; one replica fewer meanwhile). vLLM loads new adapters into the running "
        "pods without replacing them.",
    )
    max_model_length: int = Field(
        default=4096,
        ge=64,
        le=1048576,
        description="Tokens per sequence (prompt and answer) the engine serves: vLLM's "
        "--max-model-len, TGI's --max-total-tokens. The KV cache is sized for it; without "
        "it an engine takes the model's whole context (128k for some), which does not fit "
        "smaller GPUs. At least training.maxSeqLength; at most the model's context.",
    )


MERGE_METHODS = ("linear", "cat", "ties")


class CompositionData(ApiModel):
    """Compositional examples (JSON Lines, {"input": ..., "output": ...})."""

    eval: str | None = Field(
        default=None,
        max_length=MAX_PATH_CHARS,
        description="Held-out compositional examples: the composition is scored on them "
        "like a task. Without it the composition is served but never scored.",
    )


class Calibration(ApiModel):
    """Learnable Calibration (arXiv 2507.16083): a low-rank correction trained on a few
    compositional examples with the base model and the merged adapter frozen."""

    data: str = Field(
        min_length=1,
        max_length=MAX_PATH_CHARS,
        description="Compositional training examples (JSON Lines).",
    )
    rank: int = Field(default=4, ge=1, le=256, description="Rank of the correction.")
    max_steps: int = Field(default=50, ge=1, le=MAX_STEPS, description="Optimizer steps.")
    learning_rate: float = Field(default=1e-3, gt=0, le=1, description="Learning rate.")


class CompositionSpec(ApiModel):
    """A compositional task (e.g. summarise then translate) served by one adapter merged
    from its tasks' adapters, optionally calibrated; routed, scored and reported like a task."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS1123_LABEL,
        description="Unique among tasks and compositions; also the serving adapter id.",
    )
    tasks: list[str] = Field(
        min_length=2, description="The tasks whose adapters are merged, 2 or more, distinct."
    )
    weights: list[float] | None = Field(
        default=None,
        description="One merge weight per task, in the order of tasks (default 1 each).",
    )
    merge: Literal["linear", "cat", "ties"] = Field(
        default="cat",
        description="peft add_weighted_adapter: cat (exact weighted sum of the updates, "
        "rank = sum of ranks), linear (mixes A and B separately; equal ranks), ties.",
    )
    density: float = Field(
        default=0.5, gt=0, le=1, description="ties only: the fraction of weights kept."
    )
    type: TaskType = Field(default="generation", description="What the composition outputs.")
    labels: list[Label] | None = Field(
        default=None,
        max_length=MAX_LABELS,
        description="classification only: the label set, 2 or more.",
    )
    instruction: str = Field(
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        description="The instruction put before each input in the prompt.",
    )
    metric: Metric | None = Field(
        default=None, description="Score, as for tasks (default accuracy / rougeL)."
    )
    data: CompositionData = Field(default_factory=CompositionData)
    calibration: Calibration | None = Field(
        default=None, description="Train a correction on top of the merge (optional)."
    )
    baseline: Baseline | None = Field(
        default=None,
        description="A known score to qualify against ('score' only: a composition has "
        "no training data of its own to train a baseline on).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> CompositionSpec:
        duplicates = sorted({t for t in self.tasks if self.tasks.count(t) > 1})
        if duplicates:
            raise ValueError(f"tasks must be distinct; repeated: {duplicates}")
        if self.weights is not None:
            if len(self.weights) != len(self.tasks):
                raise ValueError(
                    f"weights has {len(self.weights)} entries; give one per task "
                    f"({len(self.tasks)})"
                )
            if any(w == 0 or w != w or abs(w) == float("inf") for w in self.weights):
                raise ValueError("weights must be finite and non-zero")
        if self.density != 0.5 and self.merge != "ties":
            raise ValueError("density is only used by merge: ties")
        if self.name in RESERVED_ADAPTER_NAMES or self.name.startswith(RESERVED_ADAPTER_PREFIXES):
            raise ValueError(
                f"name {self.name!r} is reserved for group, baseline or engine models; not "
                f"allowed: {', '.join(RESERVED_ADAPTER_NAMES)} or names starting with "
                f"{' or '.join(RESERVED_ADAPTER_PREFIXES)}"
            )
        _check_outputs(self.type, self.labels, False, self.metric)
        if self.baseline is not None:
            if self.baseline.score is None:
                raise ValueError(
                    "baseline: a composition takes 'score' only (it has no training data "
                    "of its own to train a single-task baseline on)"
                )
            if self.data.eval is None:
                raise ValueError("a baseline is compared on held-out data: set data.eval too")
        return self

    @property
    def merge_weights(self) -> list[float]:
        return list(self.weights) if self.weights is not None else [1.0] * len(self.tasks)

    @property
    def effective_metric(self) -> str:
        return default_metric(self.type, self.metric)


class MultiTaskDeploymentSpec(ApiModel):
    base_model: BaseModelRef
    tasks: Annotated[list[TaskSpec], Field(min_length=1, max_length=100000)]
    filtering: Filtering = Field(default_factory=Filtering)
    training: Training = Field(default_factory=Training)
    qualification: Qualification = Field(default_factory=Qualification)
    serving: Serving = Field(default_factory=Serving)
    compositions: list[CompositionSpec] = Field(
        default_factory=list,
        max_length=1000,
        description="Compositional tasks, each served by an adapter merged from its "
        "tasks' adapters (after their training).",
    )

    @model_validator(mode="after")
    def _cross_field(self) -> MultiTaskDeploymentSpec:
        seen: set[str] = set()
        repeated: list[str] = []
        for task in self.tasks:
            if task.name in seen:
                repeated.append(task.name)
            seen.add(task.name)
        if repeated:
            raise ValueError(f"task names must be unique; repeated: {sorted(set(repeated))}")
        unknown = [name for name in self.filtering.isolate if name not in seen]
        if unknown:
            raise ValueError(
                f"filtering.isolate names unknown tasks {unknown}; known: {sorted(seen)}"
            )
        return self

    @model_validator(mode="after")
    def _compositions(self) -> MultiTaskDeploymentSpec:
        if not self.compositions:
            return self
        if self.training.method == "full":
            raise ValueError(
                "compositions merge LoRA adapters: training.method must be lora or cgcLora, "
                "not full"
            )
        tasks = {task.name for task in self.tasks}
        names: set[str] = set()
        for index, composition in enumerate(self.compositions):
            where = f"compositions[{index}]"
            if composition.name in tasks:
                raise ValueError(
                    f"{where}.name: {composition.name!r} is a task's name; tasks and "
                    "compositions share the adapter ids"
                )
            if composition.name in names:
                raise ValueError(f"{where}.name: {composition.name!r} is repeated")
            names.add(composition.name)
            unknown = [name for name in composition.tasks if name not in tasks]
            if unknown:
                raise ValueError(
                    f"{where}.tasks: {unknown} are not tasks of this spec (compositions "
                    f"merge tasks' adapters); known: {sorted(tasks)}"
                )
        if self.training.method == "lora":
            # Tasks trained in one group share one adapter: merging it with itself only
            # rescales it.
            group_of = {t.name: g for g, members in group_tasks(self) for t in members}
            for index, composition in enumerate(self.compositions):
                by_group: dict[str, list[str]] = {}
                for name in composition.tasks:
                    by_group.setdefault(group_of[name], []).append(name)
                shared = {g: names for g, names in by_group.items() if len(names) > 1}
                if shared:
                    group, names_ = next(iter(shared.items()))
                    raise ValueError(
                        f"compositions[{index}].tasks: {names_} are trained together in group "
                        f"{group!r}, so they share one adapter and there is nothing to merge; "
                        "list them in filtering.isolate, or use training.method cgcLora "
                        "(one adapter per task)"
                    )
        return self

    @model_validator(mode="after")
    def _nf4_method(self) -> MultiTaskDeploymentSpec:
        """A 4-bit base is frozen: only adapters (lora, cgcLora) train on it; FSDP's
        sharding of 4-bit weights is not supported by the trainer."""
        if self.training.quantization != "nf4":
            return self
        if self.training.method == "full":
            raise ValueError(
                "training.quantization: nf4 freezes a 4-bit base, but training.method full "
                "trains every weight; use quantization none or method lora or cgcLora"
            )
        if self.training.resources.strategy == "fsdp":
            raise ValueError(
                "training.quantization: nf4 is not sharded; use training.resources.strategy "
                "ddp (each process holds the 4-bit base) or quantization none"
            )
        return self

    @model_validator(mode="after")
    def _fsdp_method(self) -> MultiTaskDeploymentSpec:
        """cgcLora's gated experts are not sharded (the trainer's FSDP covers lora, full)."""
        if self.training.resources.strategy == "fsdp" and self.training.method == "cgcLora":
            raise ValueError(
                "training.resources.strategy: fsdp shards training.method lora or full, "
                "not cgcLora; use strategy ddp or method lora"
            )
        return self

    @model_validator(mode="after")
    def _cgc_task_names(self) -> MultiTaskDeploymentSpec:
        """cgcLora serves one adapter per task under the task's name: a name reserved for
        a group, a baseline or an engine's own model would be answered by something else
        (TGI answers an adapter named `tgi` with its base model, silently)."""
        if self.training.method != "cgcLora":
            return self
        for index, task in enumerate(self.tasks):
            if task.name in RESERVED_ADAPTER_NAMES or task.name.startswith(
                RESERVED_ADAPTER_PREFIXES
            ):
                raise ValueError(
                    f"spec.tasks[{index}].name: {task.name!r} is reserved under training.method "
                    f"cgcLora (each task's adapter takes its name); not allowed: "
                    f"{', '.join(RESERVED_ADAPTER_NAMES)} or names starting with "
                    f"{' or '.join(RESERVED_ADAPTER_PREFIXES)}"
                )
        return self

    @model_validator(mode="after")
    def _batch_spans_nodes(self) -> MultiTaskDeploymentSpec:
        """Each node's processes take a share of every batch: none may be left empty."""
        nodes = self.training.resources.nodes
        if self.training.batch_size < nodes:
            raise ValueError(
                f"training.resources.nodes: {nodes} nodes split each batch of "
                f"training.batchSize {self.training.batch_size} examples; use a batchSize of "
                f"at least {nodes} or fewer nodes"
            )
        return self

    @model_validator(mode="after")
    def _full_serves_one_model(self) -> MultiTaskDeploymentSpec:
        """Method full trains whole models, not adapters: one serving Deployment holds one,
        so the spec must give one group and serve no baseline (a second model)."""
        if self.training.method != "full":
            return self
        groups = [name for name, _ in group_tasks(self)]
        if len(groups) > 1:
            raise ValueError(
                f"training.method: full trains one whole model per group and serving holds "
                f"one model, but these tasks form {len(groups)} groups ({', '.join(groups)}): "
                "set filtering.strategy none (and no filtering.isolate), or use lora or cgcLora"
            )
        trained = [t.name for t in self.tasks if t.baseline is not None and t.baseline.train]
        if trained and self.qualification.serve_baseline_for_unqualified:
            raise ValueError(
                f"qualification.serveBaselineForUnqualified: under training.method full a "
                f"baseline is a second whole model ({', '.join(trained)} train one), which "
                "the one serving model cannot hold: set it to false"
            )
        return self

    def natural_ranks(self) -> list[tuple[str, int]]:
        """(field, rank) of every adapter serving loads, as training/composing makes it.

        A composition merges its tasks' adapters with their padding stripped (zero rank
        components add nothing), so its rank comes from the natural ranks.
        """
        lora = self.training.lora.rank
        per_task, field = lora, "training.lora.rank"
        if self.training.method == "cgcLora":
            cgc = self.training.cgc_lora
            per_task = (cgc.common_experts + cgc.specific_experts) * cgc.expert_rank
            field = "training.cgcLora"
        ranks = [("training.lora.rank", lora), (field, per_task)]
        for index, composition in enumerate(self.compositions):
            # cat stacks the adapters; linear and ties keep their (common) rank.
            count = len(composition.tasks) if composition.merge == "cat" else 1
            extra = composition.calibration.rank if composition.calibration else 0
            ranks.append((f"compositions[{index}]", per_task * count + extra))
        return ranks

    def served_rank(self, rank: int) -> int | None:
        """The rank the engine loads an adapter of natural rank `rank` at (TGI pads)."""
        return engine_of(self).served_rank(rank)

    def padded_ranks(self) -> list[int] | None:
        """The ranks trainer output is padded to (TGI's kernel ranks), or None (vLLM)."""
        return engine_of(self).padded_ranks(self)

    def pads_trained_adapters(self) -> bool:
        """Whether the trained (or CGC-exported) adapters need padding to be served."""
        padded = self.padded_ranks()
        if padded is None:
            return False
        return any(rank not in padded for _, rank in self.natural_ranks()[:2])

    def max_served_rank(self) -> int:
        """The largest LoRA rank among the adapters the serving engine loads (vLLM must be
        told it in advance): trained adapters, CGC-LoRA exports, composed adapters."""
        return engine_of(self).max_served_rank(self)

    @model_validator(mode="after")
    def _servable(self) -> MultiTaskDeploymentSpec:
        problems = engine_of(self).rank_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        if self.serving.max_model_length < self.training.max_seq_length:
            raise ValueError(
                f"serving.maxModelLength: {self.serving.max_model_length} is below "
                f"training.maxSeqLength ({self.training.max_seq_length}): the engine would "
                "refuse prompts as long as those the model was trained on"
            )
        return self

    def composition(self, name: str) -> CompositionSpec:
        for composition in self.compositions:
            if composition.name == name:
                return composition
        raise KeyError(name)

    def task(self, name: str) -> TaskSpec:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)


class ObjectMeta(BaseModel):
    """The part of metadata we read; everything else Kubernetes adds passes through."""

    model_config = ConfigDict(extra="allow")

    # What the API server allows a custom resource's name (a DNS-1123 subdomain,
    # apimachinery's IsDNS1123Subdomain); kube/names.py fits every child's name to its kind.
    name: str = Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN)
    namespace: str | None = None


class MultiTaskDeployment(BaseModel):
    """A whole resource as `kubectl apply` sends it (status is written by the operator)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    api_version: Literal["multitask.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["MultiTaskDeployment"]
    metadata: ObjectMeta
    spec: MultiTaskDeploymentSpec
    status: dict | None = None


def is_dns1123_label(name: str) -> bool:
    return len(name) <= 63 and bool(_DNS1123_RE.match(name))
