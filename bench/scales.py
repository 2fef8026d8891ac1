"""The benchmark's scales and methods: every setting is fixed here, none chosen on a score."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart"
BASE_MODEL = ROOT / ".cache" / "models" / "smollm2-135m"
DEPLOYMENT = "bench"  # one deployment name: methods share artifacts by content hash
THRESHOLD = 0.99
NO_CAP = 1_000_000_000  # a dataset cap no task reaches: "K off"


@dataclass(frozen=True)
class Scale:
    budget_steps: int  # B / batch_size: optimizer steps summed over a method's runs
    batch_size: int
    max_seq_length: int
    max_chars: int  # prepare_data --max-chars
    test_examples: int | None  # first N of each test split (None: all)
    max_new_tokens: int
    learning_rate: float
    lora_rank: int
    lora_alpha: int
    stage1_fraction: float
    high_resource_min_examples: int
    dataset_cap: int
    eval_batch_size: int = 8
    # cgc-lora: experts per adapted layer; (common + specific) × rank = lora_rank
    cgc_common_experts: int = 1
    cgc_specific_experts: int = 1
    cgc_expert_rank: int = 4
    seeds: tuple[int, ...] = (0,)  # training seeds run by one invocation
    methods: tuple[str, ...] | None = None  # the methods a scale runs (None: all)
    tasks: tuple[str, ...] | None = None  # the quickstart tasks a scale uses (None: all)
    # (task, N): train that task on the first N examples of its train split only (the
    # split is in a seeded random order, so they are a random sample): a low-resource task
    train_limits: tuple[tuple[str, int], ...] = ()

    def train_limit(self, task: str) -> int | None:
        """How many training examples `task` is cut to, or None when it keeps them all."""
        return dict(self.train_limits).get(task)

    @property
    def cgc_task_rank(self) -> int:
        """The rank of each task's exported CGC-LoRA adapter."""
        return (self.cgc_common_experts + self.cgc_specific_experts) * self.cgc_expert_rank


# Minutes on 2 CPU cores: a smoke-sized run of every method, 48 steps of 4 each.
QUICK = Scale(
    budget_steps=48,
    batch_size=4,
    max_seq_length=128,
    max_chars=240,
    test_examples=50,
    max_new_tokens=24,
    learning_rate=1e-3,
    lora_rank=8,
    lora_alpha=16,
    stage1_fraction=1 / 3,
    high_resource_min_examples=10_000,
    dataset_cap=2_000,
    cgc_common_experts=1,
    cgc_specific_experts=1,
    cgc_expert_rank=4,
)

# About two hours on 2 CPU cores, in two lanes of one thread each: quick's model settings,
# twice its budget (16 steps per single-task model), 300 test examples per task so that
# paired intervals can separate methods, three training seeds.
MEDIUM = replace(
    QUICK,
    budget_steps=96,
    test_examples=300,
    seeds=(0, 1, 2),
    methods=("single-task", "naive", "three-stage"),
)

SCALES: dict[str, Scale] = {
    "quick": QUICK,
    "medium": MEDIUM,
    # The setting where the paper says staging matters (issue #18): two tasks of one
    # taxonomy group (binary), strongly imbalanced: chinese-review-sentiment keeps its
    # 16,547 training examples (high-resource), movie-review-sentiment is cut to 100
    # (low-resource, 165:1). Both methods train one group, so three-stage differs from
    # naive only by stage 1 and the stage-2 sampling (τ 2, cap K), not by filtering.
    # Medium's settings but 128 steps of 4: 64 per single-task model (4 times medium's
    # 16). Expected draws of movie-review-sentiment: naive ~3 (rate 0.6%), three-stage
    # ~63 (18% of stage 2's 86 steps), single-task 256 (2.6 epochs).
    "imbalanced": replace(
        MEDIUM,
        budget_steps=128,
        tasks=("chinese-review-sentiment", "movie-review-sentiment"),
        train_limits=(("movie-review-sentiment", 100),),
    ),
    # Hours (about a day on 2 CPU cores, ~1-2 h on one GPU): 1,200 steps of 8 per method.
    "full": Scale(
        budget_steps=1_200,
        batch_size=8,
        max_seq_length=256,
        max_chars=600,
        test_examples=None,
        max_new_tokens=48,
        learning_rate=5e-4,
        lora_rank=16,
        lora_alpha=32,
        stage1_fraction=1 / 3,
        high_resource_min_examples=10_000,
        dataset_cap=2_000,
        cgc_common_experts=2,
        cgc_specific_experts=2,
        cgc_expert_rank=4,
    ),
}


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    filtering: str  # none | taxonomy
    stage1: bool
    temperature: float
    cap: bool
    single_task: bool = False
    cgc: bool = False  # training.method cgcLora (else lora)


METHODS: tuple[Method, ...] = (
    Method("single-task", "one adapter per task (the baseline)", "taxonomy", False, 1.0, False,
           single_task=True),
    Method("naive", "one group, one stage, instance-balanced (τ=1, no cap)", "none", False,
           1.0, False),
    Method("three-stage", "taxonomy filtering + stage 1 + stage 2 (τ=2, cap K)", "taxonomy",
           True, 2.0, True),
    Method("no-filtering", "three-stage, but one group", "none", True, 2.0, True),
    Method("no-stage1", "three-stage, but every task low-resource", "taxonomy", False, 2.0,
           True),
    Method("tau-1", "three-stage, τ=1", "taxonomy", True, 1.0, True),
    Method("tau-3.33", "three-stage, τ=3.33", "taxonomy", True, 3.33, True),
    Method("no-cap", "three-stage, K off", "taxonomy", True, 2.0, False),
    Method("cgc-lora", "three-stage with CGC-LoRA experts (one exported adapter per task)",
           "taxonomy", True, 2.0, True, cgc=True),
)  # fmt: skip
ABLATIONS = ("no-filtering", "no-stage1", "tau-1", "tau-3.33", "no-cap")
METHOD_NAMES = tuple(m.name for m in METHODS)


# --device cuda: one GPU takes larger batches. The budget in examples stays the scale's
# (steps shrink by the batch factor); the learning rate grows by the square root of that
# factor (the usual rule for Adam), so the recipe differs from the CPU run's and the
# results go to their own folder (bench/results/SCALE-cuda).
GPU_BATCH_SIZE = 32
GPU_EVAL_BATCH_SIZE = 64
# Training children at a time on one GPU: each `python -m mtd_trainer train` spends ~10 s
# starting (torch, the model) before its first step, and SmolLM2-135M at batch 32 leaves
# most of a GPU idle, so four lanes overlap the start-ups of the full scale's ~43 runs
# (about 2 GB of GPU memory each).
GPU_JOBS = 4


def default_jobs(device: str) -> int:
    """Lanes when --jobs is not given: one on the CPU (its threads are the parallelism)."""
    return GPU_JOBS if device == "cuda" else 1


def on_device(scale: Scale, device: str) -> Scale:
    """The scale as run on `device` ("cpu": unchanged; "cuda": larger batches)."""
    if device == "cpu":
        return scale
    if device != "cuda":
        raise ValueError(f"device must be cpu or cuda, got {device!r}")
    factor, rest = divmod(GPU_BATCH_SIZE, scale.batch_size)
    if rest or scale.budget_steps % factor:
        raise ValueError(
            f"budget {scale.budget_steps} steps × batch {scale.batch_size} does not divide "
            f"into batches of {GPU_BATCH_SIZE}"
        )
    return replace(
        scale,
        batch_size=GPU_BATCH_SIZE,
        budget_steps=scale.budget_steps // factor,
        eval_batch_size=GPU_EVAL_BATCH_SIZE,
        learning_rate=scale.learning_rate * factor**0.5,
    )


def device_environment(device: str) -> dict[str, str]:
    """What the trainer children must see: on the CPU no GPU at all (the trainer takes a
    visible GPU by itself, so --device cpu must hide it to mean what it says)."""
    return {"CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else {}


def cuda_problem() -> str | None:
    """Why --device cuda cannot run here, or None when it can."""
    import torch

    if not torch.cuda.is_available():
        return (
            f"--device cuda: torch {torch.__version__} sees no CUDA device "
            "(torch.cuda.is_available() is False). Run it on a machine with an NVIDIA GPU "
            "and a CUDA build of torch, or leave out --device to run on the CPU."
        )
    return None


def quick_variant(scale: Scale, **changes: Any) -> Scale:
    """A copy of a scale with some fields changed (tests use tiny thresholds)."""
    return replace(scale, **changes)


def add_run_arguments(parser: argparse.ArgumentParser, scales: list[str]) -> None:
    """The options every quality-scale benchmark takes: scale, seeds, results folder."""
    parser.add_argument("--scale", choices=scales, default="quick")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--data-seed", type=int, default=0, help="data split seed (default 0)")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: one GPU, bf16 frozen weights, batches of 32 (refused without CUDA)",
    )
    parser.add_argument(
        "--out", type=Path, help="results folder (default bench/results/SCALE[-cuda])"
    )
