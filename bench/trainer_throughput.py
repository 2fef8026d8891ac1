"""Useful training tokens per second: our trainer against Hugging Face `Trainer`.

All variants train the same LoRA (r=16, all linear layers) on the same examples: the
first `steps × batch` draws of our multi-task sampler over mixed-length tasks (default:
the quickstart's six tasks, English and Chinese, classification and generation).
"Useful" tokens are the prompt and answer tokens of those examples; padding is not
counted, though it is computed.

* hf-padded: `Trainer` with its defaults, random order and each batch padded to its
  longest example (DataCollatorForSeq2Seq).
* hf-length-grouped: the same with `train_sampling_strategy="group_by_length"`.
* mtd-trainer: `python -m mtd_trainer train` (in-process), padding-free packed batches.
* flatten-ceiling: a bare loop over the same packed batches, no trainer around it.

    python bench/trainer_throughput.py [MODEL_DIR] [--steps 10] [--batch-size 8] [--threads N]

MODEL_DIR defaults to .cache/models/smollm2-135m (written by
`python -m mtd_trainer.convert_gguf`).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import (
    AutoModelForCausalLM,
    DataCollatorForSeq2Seq,
    DataCollatorWithFlattening,
    Trainer,
    TrainingArguments,
)

from mtd_trainer.config import LoraConfig, TaskConfig, TrainConfig
from mtd_trainer.data import load_examples
from mtd_trainer.encoding import encode_dataset
from mtd_trainer.modeling import attach_lora, load_tokenizer
from mtd_trainer.sampling import TaskSampler
from mtd_trainer.training import train

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / ".cache/models/smollm2-135m"
QUICKSTART = ROOT / "examples/quickstart/data"
LORA = LoraConfig(rank=16, alpha=32, dropout=0.05)
LEARNING_RATE = 2e-4


def quickstart_tasks(data: Path) -> list[TaskConfig]:
    """The quickstart tasks with labels from the data manifest."""
    manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))["tasks"]
    tasks = []
    for name, entry in manifest.items():
        labels = entry.get("labels")
        tasks.append(
            TaskConfig(
                name=name,
                type="classification" if labels else "generation",
                instruction=f"Task: {name.replace('-', ' ')}.",
                labels=labels,
                metric="accuracy" if labels else "rougeL",
                train_path=str(data / name / "train.jsonl"),
            )
        )
    return tasks


def example_pool(
    model_dir: Path, tasks: list[TaskConfig], rates: dict[str, float], args: argparse.Namespace
) -> list[dict[str, list[int]]]:
    """The examples our trainer will draw, in its order (same sampler, same seed)."""
    tokenizer = load_tokenizer(str(model_dir))
    encoded = {
        task.name: encode_dataset(
            load_examples(task.train_path or "", task), tokenizer, task, args.max_seq_length
        )
        for task in tasks
    }
    sampler = TaskSampler({n: len(d) for n, d in encoded.items()}, rates, seed=0)
    return [encoded[task][index] for task, index in sampler.draw_many(args.steps * args.batch_size)]


def fresh_lora_model(model_dir: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    return attach_lora(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), LORA)


class CountingCollator:
    """Pads like `Trainer`'s collator and counts real and computed (padded) tokens."""

    def __init__(self, inner: DataCollatorForSeq2Seq) -> None:
        self.inner = inner
        self.useful = 0
        self.computed = 0

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.inner(features)
        self.useful += sum(len(feature["input_ids"]) for feature in features)
        self.computed += batch["input_ids"].numel()
        return batch


def hf_trainer(
    model_dir: Path, pool: list[dict], args: argparse.Namespace, strategy: str
) -> dict[str, Any]:
    collator = CountingCollator(
        DataCollatorForSeq2Seq(load_tokenizer(str(model_dir)), padding="longest")
    )
    dataset = datasets.Dataset.from_list(
        [{"input_ids": row["input_ids"], "labels": row["labels"]} for row in pool]
    )
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            model=fresh_lora_model(model_dir),
            args=TrainingArguments(
                output_dir=out,
                per_device_train_batch_size=args.batch_size,
                max_steps=args.steps,
                learning_rate=LEARNING_RATE,
                warmup_steps=1,
                train_sampling_strategy=strategy,
                logging_strategy="no",
                save_strategy="no",
                report_to="none",
                use_cpu=not torch.cuda.is_available(),
                disable_tqdm=True,
                seed=0,
            ),
            train_dataset=dataset,
            data_collator=collator,
        )
        seconds = trainer.train().metrics["train_runtime"]
    return {
        "seconds": seconds,
        "useful_tokens": collator.useful,
        "computed_tokens": collator.computed,
    }


def mtd_trainer(
    model_dir: Path, tasks: list[TaskConfig], rates: dict[str, float], args: argparse.Namespace
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            run_name="bench/throughput",
            base_model=str(model_dir),
            lora=LORA,
            tasks=tasks,
            sampling={"strategy": "instance", "rates": rates},
            hyperparameters={
                "max_steps": args.steps,
                "batch_size": args.batch_size,
                "learning_rate": LEARNING_RATE,
                "max_seq_length": args.max_seq_length,
                "checkpoint_every": args.steps + 1,
                "log_every": args.steps,
                "seed": 0,
            },
            output_dir=out,
        )
        result = train(config) or {}
    tokens = result["tokens_trained"]
    return {"seconds": result["wall_seconds"], "useful_tokens": tokens, "computed_tokens": tokens}


def flatten_ceiling(model_dir: Path, pool: list[dict], batch_size: int) -> dict[str, Any]:
    model = fresh_lora_model(model_dir).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], LEARNING_RATE)
    collate = DataCollatorWithFlattening()
    start = time.perf_counter()
    for first in range(0, len(pool), batch_size):
        rows = pool[first : first + batch_size]
        batch = collate([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])
        model(**batch, use_cache=False).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    tokens = sum(len(row["input_ids"]) for row in pool)
    return {
        "seconds": time.perf_counter() - start,
        "useful_tokens": tokens,
        "computed_tokens": tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data", type=Path, default=QUICKSTART, help="quickstart-style data")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1, help="runs per variant; best kept")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.model_dir / "config.json").is_file():
        parser.error(
            f"{args.model_dir} is not a model folder; run python -m mtd_trainer.convert_gguf"
        )
    logging.basicConfig(level=logging.WARNING)
    datasets.disable_progress_bars()

    tasks = quickstart_tasks(args.data)
    sizes = {task.name: len(load_examples(task.train_path or "", task)) for task in tasks}
    rates = {name: size / sum(sizes.values()) for name, size in sizes.items()}
    pool = example_pool(args.model_dir, tasks, rates, args)
    lengths = sorted(len(row["input_ids"]) for row in pool)
    print(
        f"{len(pool)} examples, tokens min {lengths[0]} median {lengths[len(lengths) // 2]} "
        f"max {lengths[-1]}; torch threads {torch.get_num_threads()}"
    )

    flatten_ceiling(args.model_dir, pool[: args.batch_size], args.batch_size)  # warm-up
    variants: dict[str, Callable[[], dict[str, Any]]] = {
        "hf-padded": lambda: hf_trainer(args.model_dir, pool, args, "random"),
        "hf-length-grouped": lambda: hf_trainer(args.model_dir, pool, args, "group_by_length"),
        "mtd-trainer": lambda: mtd_trainer(args.model_dir, tasks, rates, args),
        "flatten-ceiling": lambda: flatten_ceiling(args.model_dir, pool, args.batch_size),
    }
    # Other load on a shared machine only slows a run down: keep each variant's best,
    # alternating the order between repeats so no variant always runs first.
    figures: dict[str, dict[str, Any]] = {}
    for repeat in range(args.repeats):
        names = list(variants) if repeat % 2 == 0 else list(reversed(variants))
        for name in names:
            row = variants[name]()
            if name not in figures or row["seconds"] < figures[name]["seconds"]:
                figures[name] = row
    figures = {name: figures[name] for name in variants}
    print(f"{'variant':<20}{'useful tok/s':>14}{'s/step':>9}{'padding':>9}{'vs hf':>8}")
    base = figures["hf-padded"]["useful_tokens"] / figures["hf-padded"]["seconds"]
    for name, row in figures.items():
        row["useful_tokens_per_second"] = row["useful_tokens"] / row["seconds"]
        row["padding_fraction"] = 1 - row["useful_tokens"] / row["computed_tokens"]
        print(
            f"{name:<20}{row['useful_tokens_per_second']:>14.1f}{row['seconds'] / args.steps:>9.2f}"
            f"{row['padding_fraction']:>9.1%}{row['useful_tokens_per_second'] / base:>8.2f}"
        )
    if args.json:
        settings = {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items()
        }
        args.json.write_text(json.dumps({"args": settings, "figures": figures}, indent=2))


if __name__ == "__main__":
    main()
