"""Useful training tokens per second and peak memory: our trainer against HF `Trainer`.

All variants train the same LoRA (r=16, all linear layers) on the same examples: the
first `steps × batch` draws of our multi-task sampler over mixed-length tasks (default:
the quickstart's six tasks, English and Chinese, classification and generation).
"Useful" tokens are the prompt and answer tokens of those examples; padding is not
counted, though it is computed.

* hf-padded: `Trainer` with its defaults, random order and each batch padded to its
  longest example (DataCollatorForSeq2Seq).
* hf-length-grouped: the same with `train_sampling_strategy="group_by_length"`.
* mtd-trainer: `mtd_trainer.training.train`, what `python -m mtd_trainer train` runs;
  padding-free packed batches.
* flatten-ceiling: a bare loop over the same packed batches, no trainer around it.

Each run of a variant is a fresh Python process (this script with `--child NAME`), so
its memory is its own. Reported, resident set sizes in MiB: the peak of the whole process
(VmHWM in /proc/self/status, read in that process; `ru_maxrss` is not used, exec leaves
the parent's size in it), the size right after the model with its LoRA is loaded (every
weight read once: from_pretrained maps the safetensors file, whose pages count only once
read), and the peak increase over that during training: activations, gradients,
optimizer state, padding (the peak mark is reset there through /proc/self/clear_refs).
Every child imports the same modules, so the interpreter, torch and transformers weigh
the same in every variant; our trainer's process also holds the encoded training sets of
all tasks (it samples from them), the HF and bare-loop processes only the drawn examples.
Time is what each variant reports for its training loop (model loading excluded), a
cold first step included for all.

    python -m bench.trainer_throughput [MODEL_DIR] [--steps 10] [--batch-size 8]
        [--max-seq-length 256] [--repeats 1] [--threads N] [--data DIR] [--json FILE]

--repeats N runs each variant N times, alternating the order, and keeps the fastest
run's time and the highest memory figures; --threads N sets torch's threads (and
OMP_NUM_THREADS) in every child; --json FILE also writes every figure, per run too.
Linux only for the memory figures (/proc). MODEL_DIR defaults to
.cache/models/smollm2-135m (written by `python -m mtd_trainer.convert_gguf`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import datasets
import torch
from transformers import (
    AutoModelForCausalLM,
    DataCollatorForSeq2Seq,
    DataCollatorWithFlattening,
    Trainer,
    TrainingArguments,
)

import mtd_trainer.training
from mtd_contract.config import LoraConfig, TaskConfig, TrainConfig
from mtd_trainer.data import load_examples
from mtd_trainer.encoding import encode_dataset
from mtd_trainer.modeling import attach_lora, load_tokenizer
from mtd_trainer.sampling import TaskSampler

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / ".cache/models/smollm2-135m"
QUICKSTART = ROOT / "examples/quickstart/data"
LORA = LoraConfig(rank=16, alpha=32, dropout=0.05)
LEARNING_RATE = 2e-4


def proc_status_kib() -> dict[str, int]:
    """This process's resident size now (VmRSS) and its peak (VmHWM), in KiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


class MemoryProbe:
    """Peak resident memory of this process, split where the model has been loaded."""

    def __init__(self) -> None:
        self.after_load: dict[str, int] | None = None

    def model_loaded(self, model: torch.nn.Module) -> None:
        if self.after_load is not None:
            return
        # from_pretrained maps the safetensors file: weights become resident only when
        # first read. Read them all now, so that they count as loaded, not as training.
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                tensor.sum()
        self.after_load = proc_status_kib()
        # "5" resets VmHWM to the current resident size (Linux >= 4.0).
        Path("/proc/self/clear_refs").write_text("5")

    def figures(self) -> dict[str, float]:
        if self.after_load is None:
            raise RuntimeError("the variant never reported its model as loaded")
        end = proc_status_kib()
        mib = 1024
        return {
            "peak_rss_mib": max(self.after_load["VmHWM"], end["VmHWM"]) / mib,
            "rss_after_load_mib": self.after_load["VmRSS"] / mib,
            "training_peak_increase_mib": (end["VmHWM"] - self.after_load["VmRSS"]) / mib,
        }


PROBE = MemoryProbe()


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
    model = attach_lora(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), LORA)
    PROBE.model_loaded(model)
    return model


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


def our_trainer(
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
        build_model = mtd_trainer.training.build_model

        def build_and_probe(config: TrainConfig) -> torch.nn.Module:
            model = build_model(config)
            PROBE.model_loaded(model)
            return model

        with mock.patch.object(mtd_trainer.training, "build_model", build_and_probe):
            result = mtd_trainer.training.train(config) or {}
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


VARIANTS = ("hf-padded", "hf-length-grouped", "mtd-trainer", "flatten-ceiling")


def run_variant(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Body of a child process: one run of one variant, time and memory."""
    shared = json.loads((args.child_dir / "shared.json").read_text(encoding="utf-8"))
    pool, rates = shared["pool"], shared["rates"]
    variants: dict[str, Callable[[], dict[str, Any]]] = {
        "hf-padded": lambda: hf_trainer(args.model_dir, pool, args, "random"),
        "hf-length-grouped": lambda: hf_trainer(args.model_dir, pool, args, "group_by_length"),
        "mtd-trainer": lambda: our_trainer(
            args.model_dir, quickstart_tasks(args.data), rates, args
        ),
        "flatten-ceiling": lambda: flatten_ceiling(args.model_dir, pool, args.batch_size),
    }
    row = variants[name]()
    return {**row, **PROBE.figures()}


def spawn_variant(name: str, args: argparse.Namespace, child_dir: Path) -> dict[str, Any]:
    """One run of one variant in a fresh process; its output is shown only if it fails."""
    command = [sys.executable, str(Path(__file__).resolve()), str(args.model_dir)]
    command += ["--data", str(args.data), "--steps", str(args.steps)]
    command += ["--batch-size", str(args.batch_size), "--max-seq-length", str(args.max_seq_length)]
    command += ["--child", name, "--child-dir", str(child_dir)]
    env = dict(os.environ)
    if args.threads:
        command += ["--threads", str(args.threads)]
        env["OMP_NUM_THREADS"] = str(args.threads)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-8000:])
        raise SystemExit(f"variant {name} failed (exit {done.returncode})")
    return json.loads((child_dir / f"{name}.json").read_text(encoding="utf-8"))


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data", type=Path, default=QUICKSTART, help="quickstart-style data")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs per variant: fastest time, highest memory kept",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--child-dir", type=Path, help=argparse.SUPPRESS)
    return parser


def run_repeats(pool, rates, args) -> tuple[dict[str, list[dict[str, Any]]], list[float]]:
    """Every variant `repeats` times, each in a child process; the load seen after each.

    Other load on a shared machine only slows a run down: keep each variant's best time,
    alternating the order between repeats so no variant always runs first."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as child_dir:
        shared = {"pool": [dict(row) for row in pool], "rates": rates}
        (Path(child_dir) / "shared.json").write_text(json.dumps(shared), encoding="utf-8")
        for repeat in range(args.repeats):
            for name in VARIANTS if repeat % 2 == 0 else tuple(reversed(VARIANTS)):
                runs[name].append(spawn_variant(name, args, Path(child_dir)))
                loads.append(os.getloadavg()[0])
    return runs, loads


def figures_of(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per variant: the fastest run's time and tokens, the fattest run's memory (memory
    does not improve with luck), and ratios to the HF Trainer's padded run."""
    memory_keys = ("peak_rss_mib", "rss_after_load_mib", "training_peak_increase_mib")
    figures: dict[str, dict[str, Any]] = {}
    for name, done in runs.items():
        fastest = min(done, key=lambda run: run["seconds"])
        fattest = max(done, key=lambda run: run["peak_rss_mib"])
        figures[name] = {
            **{key: fastest[key] for key in ("seconds", "useful_tokens", "computed_tokens")},
            **{key: fattest[key] for key in memory_keys},
            "runs": done,
        }
    hf = figures["hf-padded"]
    for row in figures.values():
        row["useful_tokens_per_second"] = row["useful_tokens"] / row["seconds"]
        row["padding_fraction"] = 1 - row["useful_tokens"] / row["computed_tokens"]
        row["peak_vs_hf"] = row["peak_rss_mib"] / hf["peak_rss_mib"]
        row["training_increase_vs_hf"] = (
            row["training_peak_increase_mib"] / hf["training_peak_increase_mib"]
        )
    return figures


def print_table(figures: dict[str, dict[str, Any]], steps: int, loads: list[float]) -> None:
    print(
        f"load average (1 min) during the runs: {min(loads):.1f}-{max(loads):.1f}; "
        "memory in MiB, resident"
    )
    print(
        f"{'variant':<20}{'useful tok/s':>14}{'s/step':>9}{'padding':>9}{'vs hf':>8}"
        f"{'peak':>8}{'loaded':>8}{'+train':>8}{'peak/hf':>9}{'+train/hf':>11}"
    )
    base = figures["hf-padded"]["useful_tokens_per_second"]
    for name, row in figures.items():
        print(
            f"{name:<20}{row['useful_tokens_per_second']:>14.1f}{row['seconds'] / steps:>9.2f}"
            f"{row['padding_fraction']:>9.1%}{row['useful_tokens_per_second'] / base:>8.2f}"
            f"{row['peak_rss_mib']:>8.0f}{row['rss_after_load_mib']:>8.0f}"
            f"{row['training_peak_increase_mib']:>8.0f}{row['peak_vs_hf']:>9.2f}"
            f"{row['training_increase_vs_hf']:>11.2f}"
        )


def main() -> None:
    cli = parser()
    args = cli.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.model_dir / "config.json").is_file():
        cli.error(f"{args.model_dir} is not a model folder; run python -m mtd_trainer.convert_gguf")
    logging.basicConfig(level=logging.WARNING)
    datasets.disable_progress_bars()
    if args.child:
        row = run_variant(args.child, args)
        (args.child_dir / f"{args.child}.json").write_text(json.dumps(row), encoding="utf-8")
        return

    tasks = quickstart_tasks(args.data)
    sizes = {task.name: len(load_examples(task.train_path or "", task)) for task in tasks}
    rates = {name: size / sum(sizes.values()) for name, size in sizes.items()}
    pool = example_pool(args.model_dir, tasks, rates, args)
    lengths = sorted(len(row["input_ids"]) for row in pool)
    print(
        f"{len(pool)} examples, tokens min {lengths[0]} median {lengths[len(lengths) // 2]} "
        f"max {lengths[-1]}; torch threads {args.threads or 'default'}; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    runs, loads = run_repeats(pool, rates, args)
    figures = figures_of(runs)
    print_table(figures, args.steps, loads)
    if args.json:
        settings = {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items()
            if not key.startswith("child")
        }
        settings["load_average_range"] = [min(loads), max(loads)]
        args.json.write_text(json.dumps({"args": settings, "figures": figures}, indent=2))


if __name__ == "__main__":
    main()
