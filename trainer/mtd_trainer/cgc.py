"""CGC-LoRA (arXiv 2402.01684): task-common and task-specific LoRA experts, gated by task.

Every adapted linear layer keeps its frozen weight W0 and gains `common_experts` LoRA
experts shared by all tasks of the group plus `specific_experts` experts per task, each
of rank `expert_rank`. A gate chosen by the task id (not by the tokens) mixes them:

    h = W0 x + (α/r) · Σ_{i ∈ common ∪ specific(t)} w_{t,i} · B_i A_i x,   w_t = softmax(g_t)

with r = expert_rank × (common + specific), the rank one task uses. The task id travels
with every token: packed rows mix tasks, so `CgcModel.forward` takes `task_ids` shaped
like `input_ids` and each layer routes the tokens of each task through that task's
experts. For generation, `CgcModel.task(name)` routes every token to one task.

Because the gate depends only on the task, a task's mixture is the fixed low-rank sum
Σ_i (s·w_{t,i}) B_i A_i: `export_task_adapters` writes it as one ordinary peft LoRA
adapter per task (rank = the sum of its experts' ranks, A stacked, B concatenated with
the gate weights and scaling folded in, lora_alpha = r so peft's own scaling is 1).
`save_state`/`load_state` keep the CGC weights themselves, so a later stage continues
from them (`init_adapter` pointing at a `cgc/` folder).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mtd_contract.config import CgcConfig, LoraConfig

from .atomic import atomic_dir, write_json
from .errors import InputError
from .modeling import write_lora_adapter

STATE_FILE = "cgc_model.safetensors"
CONFIG_FILE = "cgc_config.json"


class Router:
    """Which task each token belongs to, shared by all CGC layers during one forward."""

    def __init__(self, tasks: list[str]) -> None:
        self.tasks = list(tasks)
        self.masks: dict[str, torch.Tensor] | None = None
        self.only: str | None = None

    def set_ids(self, task_ids: torch.Tensor) -> None:
        self.masks = {
            name: task_ids == index
            for index, name in enumerate(self.tasks)
            if bool((task_ids == index).any())
        }


class CgcLinear(nn.Module):
    """A frozen linear layer plus gated common and task-specific LoRA experts."""

    def __init__(
        self,
        base: nn.Linear,
        tasks: list[str],
        cgc: CgcConfig,
        lora: LoraConfig,
        router: Router,
    ) -> None:
        super().__init__()
        self.base = base
        self.router = router
        self.rank = cgc.expert_rank
        self.num_common = cgc.common_experts
        self.num_specific = cgc.specific_experts
        self.scaling = lora.alpha / (cgc.expert_rank * (cgc.common_experts + cgc.specific_experts))
        self.dropout = nn.Dropout(lora.dropout) if lora.dropout > 0 else nn.Identity()
        weight = base.weight
        kwargs = {"device": weight.device, "dtype": torch.float32}
        self.common_A = nn.Parameter(
            torch.empty(self.num_common, self.rank, base.in_features, **kwargs)
        )
        self.common_B = nn.Parameter(
            torch.zeros(self.num_common, base.out_features, self.rank, **kwargs)
        )
        self.specific_A = nn.ParameterDict()
        self.specific_B = nn.ParameterDict()
        self.gate = nn.ParameterDict()
        for task in tasks:
            self.add_task(task)
        self._init_a(self.common_A)

    def _init_a(self, param: torch.Tensor) -> None:
        for expert in param.data:  # as peft initialises lora_A; B starts at zero
            nn.init.kaiming_uniform_(expert, a=math.sqrt(5))

    def add_task(self, task: str) -> None:
        kwargs = {"device": self.base.weight.device, "dtype": torch.float32}
        shape_a = (self.num_specific, self.rank, self.base.in_features)
        self.specific_A[task] = nn.Parameter(torch.empty(shape_a, **kwargs))
        self._init_a(self.specific_A[task])
        self.specific_B[task] = nn.Parameter(
            torch.zeros(self.num_specific, self.base.out_features, self.rank, **kwargs)
        )
        self.gate[task] = nn.Parameter(torch.zeros(self.num_common + self.num_specific, **kwargs))

    def weights(self, task: str) -> torch.Tensor:
        """The gate of `task`: softmax over its experts (common first)."""
        return torch.softmax(self.gate[task], dim=0)

    def task_factors(self, task: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(A [R, in], B [out, R]) with B·A = s · Σ_i w_i B_i A_i, R = experts × rank."""
        a = torch.cat([self.common_A, self.specific_A[task]], dim=0)  # [E, r, in]
        b = torch.cat([self.common_B, self.specific_B[task]], dim=0)  # [E, out, r]
        w = self.weights(task) * self.scaling
        a_stacked = a.reshape(-1, a.shape[-1])
        b_concat = (b * w[:, None, None]).permute(1, 0, 2).reshape(b.shape[1], -1)
        return a_stacked, b_concat

    def _delta(self, x: torch.Tensor, task: str) -> torch.Tensor:
        a, b = self.task_factors(task)
        return (self.dropout(x).to(a.dtype) @ a.T) @ b.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        router = self.router
        if router.only is not None:
            return out + self._delta(x, router.only).to(out.dtype)
        if router.masks is None:
            raise RuntimeError("a CGC layer ran without task ids (use CgcModel.task or task_ids)")
        delta = torch.zeros(out.shape, dtype=torch.float32, device=out.device)
        for task, mask in router.masks.items():
            delta = delta.index_put((mask,), self._delta(x[mask], task))
        return out + delta.to(out.dtype)


def target_names(model: nn.Module, lora: LoraConfig) -> list[str]:
    """Linear layers to adapt: every one but the output head for all-linear, else by suffix."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or module is head:
            continue
        if lora.target_modules == ["all-linear"] or any(
            name == target or name.endswith("." + target) for target in lora.target_modules
        ):
            names.append(name)
    if not names:
        raise InputError(f"lora.target_modules: {lora.target_modules} matches no linear layer")
    return names


class CgcModel(nn.Module):
    """A frozen causal LM whose target linear layers are CgcLinear; routes by task id."""

    def __init__(
        self,
        model: nn.Module,
        tasks: list[str],
        cgc: CgcConfig,
        lora: LoraConfig,
        base_model: str,
    ) -> None:
        super().__init__()
        for param in model.parameters():
            param.requires_grad_(False)
        self.model = model
        self.cgc = cgc
        self.lora = lora
        self.base_model = base_model
        self.router = Router(tasks)
        self.modules_adapted = target_names(model, lora)
        for name in self.modules_adapted:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, CgcLinear(getattr(parent, child), tasks, cgc, lora, self.router))

    @property
    def tasks(self) -> list[str]:
        return self.router.tasks

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def config(self) -> Any:
        return self.model.config

    def layers(self) -> Iterator[tuple[str, CgcLinear]]:
        for name in self.modules_adapted:
            yield name, self.model.get_submodule(name)

    def forward(self, task_ids: torch.Tensor | None = None, **kwargs: Any) -> Any:
        if task_ids is not None:
            self.router.set_ids(task_ids)
        try:
            return self.model(**kwargs)
        finally:
            if task_ids is not None:
                self.router.masks = None

    @contextlib.contextmanager
    def task(self, name: str) -> Iterator[CgcModel]:
        """Route every token to `name` (generation, evaluation)."""
        if name not in self.tasks:
            raise KeyError(f"task {name!r} is not one of this CGC model's {self.tasks}")
        self.router.only = name
        try:
            yield self
        finally:
            self.router.only = None

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.model.generate(*args, **kwargs)

    def print_trainable_parameters(self) -> None:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        print(f"cgc trainable params: {trainable:,} || all params: {total:,}")

    # -- state for later stages ------------------------------------------------------

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {
            name: param.detach().cpu().contiguous()
            for name, param in self.named_parameters()
            if param.requires_grad
        }

    def save_state(self, target: Path) -> Path:
        with atomic_dir(target) as tmp:
            save_file(self.trainable_state(), str(tmp / STATE_FILE))
            write_json(
                tmp / CONFIG_FILE,
                {
                    "base_model_name_or_path": self.base_model,
                    "tasks": self.tasks,
                    "cgc": self.cgc.model_dump(),
                    "lora": self.lora.model_dump(),
                    "modules": self.modules_adapted,
                },
            )
        return target

    def load_state(self, path: str, field: str = "init_adapter") -> list[str]:
        """Continue from a saved CGC state; returns the tasks it held (new ones start fresh)."""
        folder = Path(path)
        if not (folder / CONFIG_FILE).is_file():
            raise InputError(f"{field}: {path} is not a CGC state (it has no {CONFIG_FILE})")
        saved = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        if saved["cgc"] != self.cgc.model_dump() or saved["modules"] != self.modules_adapted:
            raise InputError(
                f"{field}: {path} has other CGC experts or layers ({saved['cgc']}) than this "
                f"run ({self.cgc.model_dump()})"
            )
        weights = load_file(str(folder / STATE_FILE))
        own = dict(self.named_parameters())
        for name, tensor in weights.items():
            if name in own:  # a task only the earlier stage had is dropped
                own[name].data.copy_(tensor)
        return list(saved["tasks"])

    # -- export ----------------------------------------------------------------------

    @torch.no_grad()
    def task_factors(self, task: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per adapted module: (A, B) with B·A = this task's whole low-rank update."""
        return {name: layer.task_factors(task) for name, layer in self.layers()}

    def export_task_adapter(
        self, task: str, target: Path, served_ranks: list[int] | None = None
    ) -> Path:
        """One ordinary peft LoRA adapter reproducing this task's mixture exactly (padded
        with zeros to a rank in `served_ranks` when given: still exact)."""
        return write_lora_adapter(target, self.task_factors(task), self.base_model, served_ranks)

    def export_task_adapters(
        self, folder: Path, served_ranks: list[int] | None = None
    ) -> dict[str, str]:
        return {
            task: str(self.export_task_adapter(task, folder / task, served_ranks))
            for task in self.tasks
        }

    def gate_weights(self) -> dict[str, dict[str, list[float]]]:
        """Per task, per layer: the gate's weights (common experts first), for reports."""
        return {
            task: {
                name: [round(v, 6) for v in layer.weights(task).tolist()]
                for name, layer in self.layers()
            }
            for task in self.tasks
        }


def task_id_tensor(tasks: list[str], rows: list[tuple[str, int]]) -> torch.Tensor:
    """[1, Σ lengths] task indices for a packed row of examples (task name, length)."""
    ids = [tasks.index(task) for task, length in rows for _ in range(length)]
    return torch.tensor([ids], dtype=torch.long)
