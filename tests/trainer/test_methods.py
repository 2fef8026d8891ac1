"""Training methods as objects, and progress as a dataclass that checkpoints as before.

The methods are picked by the config's name and write the folders `mtd_contract.layout`
names; `Progress` reads a progress.json in the shape checkpoints always had (so a run
killed under the older trainer resumes) and writes it byte for byte the same.
"""

from __future__ import annotations

import json
import typing
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from mtd_contract.config import TrainConfig
from mtd_contract.layout import artifact_dir
from mtd_trainer import checkpoints
from mtd_trainer.methods import METHODS, CgcLora, Full, Lora, training_method
from mtd_trainer.progress import Evaluation, Progress, Window
from mtd_trainer.sampling import TaskSampler


def test_every_configurable_method_has_an_object_writing_its_layout_folder() -> None:
    names = typing.get_args(TrainConfig.model_fields["method"].annotation)
    assert set(METHODS) == set(names)
    for name in names:
        assert METHODS[name].name == name
        assert METHODS[name].artifact == artifact_dir(name)


def test_the_config_picks_the_method_and_an_unknown_one_is_refused(
    train_config: Callable[..., dict],
) -> None:
    cgc = {"expert_rank": 2}
    picked = {
        "lora": Lora,
        "full": Full,
        "cgcLora": CgcLora,
    }
    for name, kind in picked.items():
        raw = train_config(name, method=name, **({"cgc": cgc} if name == "cgcLora" else {}))
        assert type(training_method(TrainConfig.model_validate(raw))) is kind

    # The config's schema refuses it first; a config built around validation still may not.
    unknown = TrainConfig.model_validate(train_config()).model_copy(update={"method": "dpo"})
    with pytest.raises(ValueError, match=r"'dpo' is unknown; known: lora, full, cgcLora"):
        training_method(unknown)


def test_only_cgc_sends_task_ids_with_every_token(train_config: Callable[..., dict]) -> None:
    rows = [("sounds", 2), ("sentiment", 3)]
    lora = training_method(TrainConfig.model_validate(train_config()))
    assert lora.batch_extras(rows) == {}
    raw = train_config(method="cgcLora", cgc={"expert_rank": 2})
    extras = training_method(TrainConfig.model_validate(raw)).batch_extras(rows)
    # Indices follow the config's task order: sentiment 0, sounds 1.
    assert extras.keys() == {"task_ids"}
    assert extras["task_ids"].tolist() == [[1, 1, 0, 0, 0]]


def legacy_progress() -> dict[str, Any]:
    """A progress.json as the trainer wrote it before `Progress` (a plain dict)."""
    sampler = TaskSampler({"sentiment": 64, "sounds": 24}, {"sentiment": 0.75, "sounds": 0.25}, 7)
    sampler.draw_many(16)
    return json.loads(
        json.dumps(
            {
                "step": 4,
                "tokens": 1234,
                "seconds": 2.5,
                "loss": 3.25,
                "evals": [{"step": 2, "scores": {"sentiment": 0.5, "sounds": 0.0}}],
                "sampler": sampler.state_dict(),
            }
        )
    )


def test_progress_reads_and_writes_the_shape_checkpoints_always_had() -> None:
    data = legacy_progress()
    progress = Progress.from_json(data)
    assert (progress.step, progress.tokens, progress.seconds, progress.loss) == (4, 1234, 2.5, 3.25)
    assert progress.evals == [Evaluation(2, {"sentiment": 0.5, "sounds": 0.0})]
    assert progress.to_json() == data

    fresh = Progress()  # a run before its first step and checkpoint
    assert Progress.from_json(json.loads(json.dumps(fresh.to_json()))) == fresh
    assert fresh.to_json() == {
        "step": 0, "tokens": 0, "seconds": 0.0, "loss": None, "evals": [], "sampler": None
    }  # fmt: skip

    del data["sampler"]
    with pytest.raises(KeyError, match="sampler"):  # resume calls it a different run's
        Progress.from_json(data)


def tiny_training_state() -> tuple[torch.nn.Module, torch.optim.Optimizer, Any]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def test_a_checkpoint_keeps_progress_json_as_before_and_resumes_an_older_one(
    tmp_path: Path,
) -> None:
    model, optimizer, scheduler = tiny_training_state()
    data = legacy_progress()
    saved = checkpoints.save(tmp_path, 4, model, optimizer, scheduler, Progress.from_json(data))

    # Byte for byte what the dict-based trainer wrote (atomic.write_json's formatting).
    written = (saved / "progress.json").read_text(encoding="utf-8")
    assert written == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert checkpoints.load(saved, model, optimizer, scheduler) == Progress.from_json(data)

    # A checkpoint whose progress.json an older trainer wrote resumes into the dataclass.
    (saved / "progress.json").write_text(json.dumps(data), encoding="utf-8")
    resumed = checkpoints.load(saved, model, optimizer, scheduler)
    assert resumed.step == 4 and resumed.evals[0].scores["sentiment"] == 0.5
    assert resumed.sampler is not None
    sampler = TaskSampler({"sentiment": 64, "sounds": 24}, {"sentiment": 0.75, "sounds": 0.25}, 7)
    sampler.load_state_dict(resumed.sampler)
    assert sampler.drawn == data["sampler"]["drawn"]


def test_a_window_averages_the_steps_since_the_last_row() -> None:
    window = Window()
    window.add(2.0, 10, Counter({"sentiment": 3, "sounds": 1}))
    window.add(1.0, 6, Counter({"sentiment": 2, "sounds": 2}))
    row = window.row(8, 1e-3)
    assert row["step"] == 8 and row["loss"] == 1.5 and row["lr"] == 1e-3
    assert row["examples_per_task"] == {"sentiment": 5, "sounds": 3}
    assert row["tokens_per_second"] > 0
    assert list(row) == ["step", "loss", "lr", "tokens_per_second", "examples_per_task"]
