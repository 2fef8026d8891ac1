"""One training run: a stage of a group, or a single-task baseline.

Reads top to bottom like a recipe: data → model → optimizer → resume → loop → save.
Each optimizer step takes `batch_size × gradient_accumulation_steps` examples per
process from the multi-task sampler; every micro-batch is packed padding-free into one
row (position ids restart per example, so attention stays within each example), which
on CPU and GPU alike spends compute only on real tokens. The loss is the mean over all
answer tokens of the whole step, across micro-batches and processes, so accumulation
and DDP give the same update as one big batch. torchrun runs it as DDP, or with
`strategy: fsdp` as FSDP2 (`sharding.py`: who shards, and how state is gathered); a
plain `python -m` run is single-process. What differs between LoRA, full fine-tuning
and CGC-LoRA (the model, a batch's extra inputs, evaluation, export) is the method
object's (`methods.py`); nothing here asks which method it runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, set_seed
from tqdm.auto import tqdm
from transformers import DataCollatorWithFlattening, get_linear_schedule_with_warmup

from mtd_contract.config import TrainConfig
from mtd_contract.layout import RESULT_FILE

from . import checkpoints, sharding
from .atomic import write_text
from .data import load_examples
from .encoding import IGNORE, check_prompt_fits, encode_dataset
from .errors import InputError
from .evaluation import Scorer, eval_examples, score_task
from .methods import training_method
from .metrics import saturation_step
from .modeling import load_tokenizer
from .progress import Evaluation, Progress, Window
from .sampling import TaskSampler
from .verified import reusable, write_result

log = logging.getLogger(__name__)

MAX_GRAD_NORM = 1.0


def build_model(config: TrainConfig) -> torch.nn.Module:
    """The model `config`'s method trains. A module-level seam on purpose:
    bench/trainer_throughput.py patches it to measure memory once the model is loaded."""
    return training_method(config).build_model()


def add_counts(batch: dict[str, list]) -> dict[str, list[int]]:
    """Per example: tokens, and answer tokens the loss counts (the first never is)."""
    return {
        "length": [len(ids) for ids in batch["input_ids"]],
        "targets": [sum(label != IGNORE for label in labels[1:]) for labels in batch["labels"]],
    }


class Run:
    """State of one training run, with the pieces a test or the CLI may drive."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.method = training_method(config)
        self.hp = config.hyperparameters
        self.output = self.method.output
        # cpu=True on GPU-less hosts is what lets torchrun start multi-process CPU DDP (gloo).
        cuda = torch.cuda.is_available()
        processes = int(os.environ.get("WORLD_SIZE", "1"))
        self.sharder = sharding.sharder(config.strategy, cuda, processes)
        plugin = sharding.accelerate_plugin() if self.sharder == "accelerate" else None
        self.accelerator = Accelerator(cpu=not cuda, fsdp_plugin=plugin)
        if self.hp.batch_is_global and self.hp.batch_size < self.accelerator.num_processes:
            raise InputError(
                f"hyperparameters.batch_size: {self.hp.batch_size} examples cannot be split "
                f"among {self.accelerator.num_processes} processes; use at least that many"
            )
        set_seed(self.hp.seed)
        self.tokenizer = load_tokenizer(config.base_model)
        for task in config.tasks:
            check_prompt_fits(self.tokenizer, task, self.hp.max_seq_length)
        with self.accelerator.main_process_first():  # one process fills the datasets cache
            self.train_sets = {
                task.name: encode_dataset(
                    load_examples(task.train_path or "", task),
                    self.tokenizer,
                    task,
                    self.hp.max_seq_length,
                ).map(add_counts, batched=True, desc="counting tokens")
                for task in config.tasks
            }
        self.eval_sets = (
            eval_examples(config.tasks, self.hp.eval_max_examples) if self.hp.eval_every else {}
        )
        self.sampler = TaskSampler(
            {name: len(data) for name, data in self.train_sets.items()},
            config.sampling.rates,
            self.hp.seed,
        )
        model = build_model(config)
        if self.sharder == "torch":  # before the optimizer: it must hold the shards
            model = sharding.shard_with_torch(model)
        elif plugin is not None:  # the same units as the torch path: one per decoder layer
            plugin.transformer_cls_names_to_wrap = sorted(sharding.layer_classes(model))
        optimizer = torch.optim.AdamW(
            [param for param in model.parameters() if param.requires_grad],
            lr=self.hp.learning_rate,
            weight_decay=self.hp.weight_decay,
        )
        self.scheduler = get_linear_schedule_with_warmup(
            optimizer, math.ceil(self.hp.warmup_ratio * self.hp.max_steps), self.hp.max_steps
        )
        # The scheduler is stepped by hand once per optimizer step, so it is not prepared.
        if self.sharder == "torch":  # prepare would wrap the sharded model in DDP
            self.model, self.optimizer = model, self.accelerator.prepare(optimizer)
        else:
            self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.sharded = sharding.is_sharded(self.model)
        self.collate = DataCollatorWithFlattening()
        self.progress = Progress()

    @property
    def checkpoint_dir(self) -> Path:
        return self.output / "checkpoints"

    def resume(self) -> None:
        """Continue from the newest checkpoint in output_dir, if there is one."""
        path = checkpoints.latest(self.checkpoint_dir)
        if path is None:
            return
        try:
            self.progress = checkpoints.load(
                path,
                self.accelerator.unwrap_model(self.model),
                self._torch_optimizer(),
                self.scheduler,
            )
            if self.progress.sampler is None:
                raise ValueError("its progress has no sampler state")
            self.sampler.load_state_dict(self.progress.sampler)
        except (ValueError, RuntimeError, KeyError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise InputError(
                f"output_dir: {path} was written by a different run; use a new output_dir "
                f"or delete it ({first})"
            ) from None
        if self.accelerator.is_main_process:
            self._truncate_metrics(self.progress.step)
        log.info("resumed from %s at step %d", path, self.progress.step)

    def step(self) -> tuple[float, int, Counter[str]]:
        """One optimizer step; returns the mean loss, tokens trained and examples per task."""
        hp, acc = self.hp, self.accelerator
        per_micro = hp.batch_size if hp.batch_is_global else hp.batch_size * acc.num_processes
        # This process's slice of each micro-batch; shares differ by at most one example,
        # which is still exact: the loss is summed over tokens and divided by the step's.
        start = per_micro * acc.process_index // acc.num_processes
        end = per_micro * (acc.process_index + 1) // acc.num_processes
        drawn = self.sampler.draw_many(per_micro * hp.gradient_accumulation_steps)
        rows = [self.train_sets[task][index] for task, index in drawn]
        num_items = sum(row["targets"] for row in rows)
        loss_sum = torch.zeros((), device=acc.device)
        for micro in range(hp.gradient_accumulation_steps):
            first, last_row = micro * per_micro + start, micro * per_micro + end
            mine = rows[first:last_row]
            features = [{"input_ids": row["input_ids"], "labels": row["labels"]} for row in mine]
            batch = self.collate(features)
            lengths = [
                (task, len(row["input_ids"]))
                for (task, _), row in zip(drawn[first:last_row], mine, strict=True)
            ]
            batch.update(self.method.batch_extras(lengths))
            batch = {key: value.to(acc.device) for key, value in batch.items()}
            last = micro == hp.gradient_accumulation_steps - 1
            with contextlib.nullcontext() if last else acc.no_sync(self.model):
                # The loss is already summed over this process's tokens / all tokens of the
                # step; DDP averages gradients over processes, so scale that back up.
                loss = self.model(**batch, use_cache=False, num_items_in_batch=num_items).loss
                acc.backward(loss * acc.num_processes)
            loss_sum += loss.detach()
        acc.clip_grad_norm_(self.model.parameters(), MAX_GRAD_NORM)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        mean_loss = acc.reduce(loss_sum, reduction="sum").item()
        return mean_loss, sum(row["length"] for row in rows), Counter(task for task, _ in drawn)

    def _torch_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer inside accelerate's wrapper (what torch's state-dict API takes)."""
        return getattr(self.optimizer, "optimizer", self.optimizer)

    def evaluate(self) -> dict[str, float]:
        """Interval evaluation for the saturation step: the main process scores, except
        under FSDP, where every forward is a collective, so all ranks run the same
        generation (same examples, greedy) and the main process's scores are kept."""
        scores: dict[str, float] = {}
        if self.accelerator.is_main_process or self.sharded:
            model = self.accelerator.unwrap_model(self.model)
            model.eval()
            scorer = Scorer(model, self.tokenizer, self.hp.batch_size, self.hp.max_seq_length)
            for task in self.config.tasks:
                with self.method.evaluating(model, task.name):
                    examples = self.eval_sets[task.name]
                    row = score_task(scorer, task, examples, self.hp.eval_max_new_tokens)
                    scores[task.name] = row["score"]
            model.train()
        # Every rank keeps the main process's scores (its progress and result use them).
        shared = [scores]
        broadcast_object_list(shared, from_process=0)
        return shared[0]

    def train(self, stop_after_steps: int | None = None) -> dict[str, Any] | None:
        """Train to max_steps and save; `stop_after_steps` simulates a kill (returns None)."""
        hp, acc, progress = self.hp, self.accelerator, self.progress
        self.model.train()
        bar = tqdm(
            total=hp.max_steps,
            initial=progress.step,
            desc=self.config.run_name,
            disable=not acc.is_main_process,
        )
        session_start = time.monotonic()
        seconds_before = progress.seconds
        window = Window()
        while progress.step < hp.max_steps:
            loss, tokens, tasks = self.step()
            progress.step += 1
            progress.tokens += tokens
            progress.loss = loss
            progress.seconds = seconds_before + time.monotonic() - session_start
            window.add(loss, tokens, tasks)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            step = progress.step
            if step % hp.log_every == 0 or step == hp.max_steps:
                self._record(window.row(step, self.scheduler.get_last_lr()[0]))
                window = Window()
            if hp.eval_every and (step % hp.eval_every == 0 or step == hp.max_steps):
                scores = self.evaluate()
                progress.evals.append(Evaluation(step, scores))
                self._record({"step": step, "eval": scores})
            if step % hp.checkpoint_every == 0 and step < hp.max_steps:
                self._checkpoint(step)
            if stop_after_steps is not None and step >= stop_after_steps:
                bar.close()
                return None
        bar.close()
        return self._finish()

    def _checkpoint(self, step: int) -> None:
        """Save a checkpoint at `step` (a collective when sharded; rank 0 writes)."""
        acc = self.accelerator
        self.progress.sampler = self.sampler.state_dict()
        gathered = None
        if self.sharded:  # a collective: every rank gathers, rank 0 writes
            gathered = (
                sharding.trainable_state(self.model),
                sharding.optimizer_state(self.model, self._torch_optimizer()),
            )
        if acc.is_main_process:
            checkpoints.save(
                self.checkpoint_dir,
                step,
                acc.unwrap_model(self.model),
                self._torch_optimizer(),
                self.scheduler,
                self.progress,
                gathered,
            )
        acc.wait_for_everyone()

    def _finish(self) -> dict[str, Any]:
        """Save the artifact and result.json (atomically), then drop the checkpoints."""
        acc, progress = self.accelerator, self.progress
        artifact = self.output / self.method.artifact
        result: dict[str, Any] = {
            "run_name": self.config.run_name,
            "method": self.method.name,
            "steps": progress.step,
            "tokens_trained": progress.tokens,
            "wall_seconds": round(progress.seconds, 3),
            "final_loss": progress.loss,
            "examples_per_task": self.sampler.drawn,
            "artifact": str(artifact),
            # How examples became model input: what serving must send (mtd_contract.upstream).
            "prompt_format": "chat" if self.tokenizer.chat_template else "plain",
        }
        if progress.evals:
            per_task = {
                task.name: saturation_step([(e.step, e.scores[task.name]) for e in progress.evals])
                for task in self.config.tasks
            }
            result["saturation"] = per_task
            result["saturation_step"] = max(step for step in per_task.values() if step is not None)
            result["final_scores"] = progress.evals[-1].scores
        model = acc.unwrap_model(self.model)
        # Sharded: every rank gathers the weights to export, rank 0 writes them.
        state = self.method.gather(model) if self.sharded else None
        result.update(self.method.result_fields(model))
        if acc.is_main_process:
            produced = self.method.export(model, self.tokenizer, state)
            result = write_result(self.output / RESULT_FILE, result, produced)
            shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        acc.wait_for_everyone()
        return result

    def _record(self, entry: dict[str, Any]) -> None:
        """A line in metrics.jsonl and in the log."""
        if not self.accelerator.is_main_process:
            return
        self.output.mkdir(parents=True, exist_ok=True)
        with open(self.output / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
        if "eval" in entry:
            log.info("step %d eval %s", entry["step"], entry["eval"])
        else:
            log.info(
                "step %d loss %.4f lr %.2e %.0f tokens/s examples %s",
                entry["step"],
                entry["loss"],
                entry["lr"],
                entry["tokens_per_second"],
                entry["examples_per_task"],
            )

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines a killed run wrote after its last checkpoint, and a line it
        was killed while writing (cut short, so not JSON): the rows stay monotonic."""
        path = self.output / "metrics.jsonl"
        if not path.exists():
            return
        text = path.read_text(encoding="utf-8", errors="replace")
        kept = [line for line in text.splitlines() if _kept_row(line, step)]
        write_text(path, "".join(line + "\n" for line in kept))


def _kept_row(line: str, last: int) -> bool:
    """A whole metrics row at or before step `last`."""
    try:
        row = json.loads(line)
    except ValueError:
        return False
    step = row.get("step") if isinstance(row, dict) else None
    return isinstance(step, int) and step <= last


def train(config: TrainConfig, stop_after_steps: int | None = None) -> dict[str, Any] | None:
    """Run (or resume, or recognise as done) one training run; returns result.json."""
    result_path = Path(config.output_dir) / RESULT_FILE
    done = reusable(result_path)
    if done is not None:
        log.info("%s exists and its files match it: this run is complete", result_path)
        return done
    run = Run(config)
    run.resume()
    return run.train(stop_after_steps)
