"""`python -m bench.quality --device cuda`: the GPU recipe, and a refusal without CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench import quality, scales
from bench.scales import SCALES, device_environment, on_device


def test_the_cpu_runs_the_scale_as_defined():
    assert on_device(SCALES["full"], "cpu") == SCALES["full"]


@pytest.mark.parametrize("name", sorted(SCALES))
def test_the_gpu_recipe_keeps_the_budget_in_examples(name: str):
    scale = SCALES[name]
    gpu = on_device(scale, "cuda")
    assert gpu.batch_size == scales.GPU_BATCH_SIZE
    assert gpu.budget_steps * gpu.batch_size == scale.budget_steps * scale.batch_size
    factor = gpu.batch_size / scale.batch_size
    assert gpu.learning_rate == pytest.approx(scale.learning_rate * factor**0.5)
    assert gpu.eval_batch_size == scales.GPU_EVAL_BATCH_SIZE
    # everything that defines the task stays: data, lengths, test examples, model
    for field in ("max_seq_length", "max_chars", "test_examples", "lora_rank", "seeds"):
        assert getattr(gpu, field) == getattr(scale, field)


def test_full_on_one_gpu_is_300_steps_of_32():
    gpu = on_device(SCALES["full"], "cuda")
    assert (gpu.budget_steps, gpu.batch_size, gpu.learning_rate) == (300, 32, pytest.approx(1e-3))


def test_a_budget_that_does_not_divide_is_refused():
    odd = scales.quick_variant(SCALES["quick"], budget_steps=50)
    with pytest.raises(ValueError, match="does not divide into batches of 32"):
        on_device(odd, "cuda")
    with pytest.raises(ValueError, match="cpu or cuda"):
        on_device(odd, "tpu")


def test_on_the_cpu_the_children_see_no_gpu():
    assert device_environment("cpu") == {"CUDA_VISIBLE_DEVICES": ""}
    assert device_environment("cuda") == {}


def test_cuda_problem_matches_this_machine():
    problem = scales.cuda_problem()
    assert (problem is None) == torch.cuda.is_available()


def test_without_cuda_the_command_refuses_with_exit_2(monkeypatch, capsys, tmp_path: Path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = quality.main(["--scale", "full", "--device", "cuda", "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--device cuda" in err and "no CUDA device" in err
    assert "leave out --device" in err
    assert not (tmp_path / "o").exists()


def test_one_gpu_trains_in_four_lanes_and_the_cpu_in_one():
    """Lanes overlap the trainer children's start-up on a GPU; on the CPU threads do."""
    assert quality.parser().parse_args(["--scale", "full"]).jobs is None
    assert scales.default_jobs("cuda") == scales.GPU_JOBS == 4
    assert scales.default_jobs("cpu") == 1
    assert quality.parser().parse_args(["--jobs", "3"]).jobs == 3
