"""Training methods as objects: LoRA, full fine-tuning and CGC-LoRA.

Each method owns what differs between them — the model it trains, what a batch carries
besides tokens, how one task is evaluated, and what the artifact and result hold — so the
training loop (`training.Run`) runs any of them without asking which it has.
`training_method` is the one place the configured method's name is looked at.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import PreTrainedTokenizerBase

from mtd_contract.config import TrainConfig
from mtd_contract.layout import (
    ADAPTER_DIR,
    CGC_STATE_DIR,
    GATES_FILE,
    MODEL_DIR,
    TASK_ADAPTERS_DIR,
    task_adapter_dir,
)

from . import sharding
from .atomic import write_json
from .cgc import CgcModel, task_id_tensor
from .modeling import (
    attach_lora,
    compute_dtype,
    load_adapter,
    load_model,
    load_nf4_model,
    save_artifact,
)

#: Weights gathered from a sharded model for export (None when not sharded).
ExportState = dict[str, torch.Tensor] | None


class TrainingMethod(ABC):
    """What one training method decides; the defaults are plain LoRA's."""

    #: The name `TrainConfig.method` gives it.
    name: ClassVar[str]
    #: The folder (in the run's output) its artifact lies in, from `mtd_contract.layout`.
    artifact: ClassVar[str]

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        #: The run's output folder: the artifact, the result and the metrics go there.
        self.output = Path(config.output_dir)

    @abstractmethod
    def build_model(self) -> torch.nn.Module:
        """The model to train, its trainable parameters marked (`requires_grad`)."""

    def batch_extras(self, rows: list[tuple[str, int]]) -> dict[str, torch.Tensor]:
        """Inputs the model needs beside the packed tokens of one micro-batch, given each
        example's (task, token count) in packing order."""
        return {}

    def evaluating(self, model: torch.nn.Module, task: str) -> AbstractContextManager[Any]:
        """The context in which `model` answers as it would for `task` alone."""
        return contextlib.nullcontext()

    def gather(self, model: torch.nn.Module) -> ExportState:
        """The weights the artifact needs, out of a sharded model's shards; a collective,
        so every rank calls it (rank 0 receives them)."""
        return sharding.trainable_state(model)

    def result_fields(self, model: torch.nn.Module) -> dict[str, Any]:
        """What result.json records beside the common fields (every rank computes it)."""
        return {}

    def export(
        self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, state: ExportState
    ) -> list[Path]:
        """Write the artifact (main process only); returns every path result.json seals."""
        artifact = self.output / self.artifact
        save_artifact(model, tokenizer, artifact, self.config.served_ranks, state)
        return [artifact]

    def _frozen_base(self) -> torch.nn.Module:
        """The base the adapters train on: NF4 (QLoRA) or the compute dtype."""
        if self.config.quantization == "nf4":
            return load_nf4_model(self.config.base_model)
        return load_model(self.config.base_model, dtype=compute_dtype())


class Lora(TrainingMethod):
    """One LoRA adapter on the frozen base: new, or continued from `init_adapter`."""

    name = "lora"
    artifact = ADAPTER_DIR

    def build_model(self) -> torch.nn.Module:
        config = self.config
        base = self._frozen_base()
        if config.init_adapter:
            model = load_adapter(base, config.init_adapter, config.base_model, "init_adapter", True)
        else:
            model = attach_lora(base, config.lora)
        model.print_trainable_parameters()
        return model


class Full(TrainingMethod):
    """Every weight trains (fp32); `init_adapter` is then a whole model to continue."""

    name = "full"
    artifact = MODEL_DIR

    def build_model(self) -> torch.nn.Module:
        if self.config.init_adapter:
            return load_model(self.config.init_adapter, field="init_adapter")
        return load_model(self.config.base_model)

    def gather(self, model: torch.nn.Module) -> ExportState:
        return sharding.full_state(model)


class CgcLora(TrainingMethod):
    """Shared and per-task LoRA experts mixed by per-task gates (`cgc.py`): every token
    carries its task id, evaluation routes to one task, and the artifact is one plain
    adapter per task (for serving) plus the CGC state (for the next stage)."""

    name = "cgcLora"
    artifact = TASK_ADAPTERS_DIR

    def build_model(self) -> torch.nn.Module:
        config = self.config
        if config.cgc is None:
            raise ValueError("method cgcLora needs the cgc settings")  # the config ensures it
        tasks = [task.name for task in config.tasks]
        cgc = CgcModel(self._frozen_base(), tasks, config.cgc, config.lora, config.base_model)
        if config.init_adapter:
            cgc.load_state(config.init_adapter)
        cgc.print_trainable_parameters()
        return cgc

    def batch_extras(self, rows: list[tuple[str, int]]) -> dict[str, torch.Tensor]:
        tasks = [task.name for task in self.config.tasks]
        return {"task_ids": task_id_tensor(tasks, rows)}

    def evaluating(self, model: torch.nn.Module, task: str) -> AbstractContextManager[Any]:
        return _cgc(model).task(task)

    def result_fields(self, model: torch.nn.Module) -> dict[str, Any]:
        output = self.output
        return {
            "adapters": {task: str(output / task_adapter_dir(task)) for task in _cgc(model).tasks},
            "cgc_state": str(output / CGC_STATE_DIR),
        }

    def export(
        self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, state: ExportState
    ) -> list[Path]:
        cgc, output = _cgc(model), self.output
        artifact, state_dir = output / self.artifact, output / CGC_STATE_DIR
        cgc.export_task_adapters(artifact, self.config.served_ranks)
        cgc.save_state(state_dir)
        write_json(state_dir / GATES_FILE, cgc.gate_weights())
        return [artifact, state_dir]


def _cgc(model: torch.nn.Module) -> CgcModel:
    """The model CgcLora built (a wrong one is a bug, not a user's mistake)."""
    if not isinstance(model, CgcModel):
        raise TypeError(f"method cgcLora trains a CgcModel, not {type(model).__name__}")
    return model


#: Every method, by the name a config gives it.
METHODS: dict[str, type[TrainingMethod]] = {method.name: method for method in (Lora, Full, CgcLora)}


def training_method(config: TrainConfig) -> TrainingMethod:
    """The method `config.method` names; ValueError naming the known ones otherwise."""
    try:
        method = METHODS[config.method]
    except KeyError:
        known = ", ".join(METHODS)
        raise ValueError(f"method {config.method!r} is unknown; known: {known}") from None
    return method(config)
