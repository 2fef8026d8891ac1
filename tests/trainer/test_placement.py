"""Where inference runs: CUDA when present (bf16 where the GPU has it), fp32 on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtd_contract.config import ComposeConfig
from mtd_trainer import compose, evaluation
from mtd_trainer.modeling import Placement, choose_placement, local_placement

from .test_compose import compose_config, random_adapter

BF16_CPU = Placement("cpu", torch.bfloat16)


@pytest.mark.parametrize(
    ("cuda", "bf16", "expected"),
    [
        (True, True, Placement("cuda", torch.bfloat16)),
        (True, False, Placement("cuda", torch.float32)),  # e.g. V100: no bf16, fp16 overflows
        (False, False, Placement("cpu", torch.float32)),
        (False, True, Placement("cpu", torch.float32)),
    ],
)
def test_choose_placement(cuda: bool, bf16: bool, expected: Placement) -> None:
    assert choose_placement(cuda, bf16) == expected


def test_this_machine_has_no_gpu_so_fp32_on_the_cpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert local_placement() == Placement("cpu", torch.float32)


def test_evaluation_and_compose_load_where_placement_says(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each inference path asks `local_placement`; make it answer bf16 and see it obeyed."""
    monkeypatch.setattr(evaluation, "local_placement", lambda: BF16_CPU)
    monkeypatch.setattr(compose, "local_placement", lambda: BF16_CPU)
    assert evaluation.load_for_inference(str(tiny_model), None).dtype == torch.bfloat16
    adapters = [random_adapter(tiny_model, tmp_path / f"a{i}", seed=i) for i in (1, 2)]
    config = ComposeConfig.model_validate(
        compose_config(tiny_model, adapters, tmp_path / "out", merge={"method": "cat"})
    )
    merged = compose.load_adapters(config)
    assert merged.get_base_model().dtype == torch.bfloat16
