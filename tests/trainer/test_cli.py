"""The CLI: exit codes, one-line errors naming the file:line or field, no partial artifact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import peft
import pytest
import torch
from transformers import AutoModelForCausalLM

from mtd_contract.quantization import nf4_unavailable
from mtd_trainer.cli import main

from .conftest import sentiment_task


def adapter_for(base: Path, folder: Path) -> Path:
    """An untrained LoRA adapter saved for `base` (what a previous stage would leave)."""
    model = AutoModelForCausalLM.from_pretrained(base)
    peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules="all-linear")).save_pretrained(
        folder
    )
    return folder


def run_cli(verb: str, config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main([verb, "--config", str(config)])
    return code, capsys.readouterr().err


def assert_rejected(code: int, err: str, output_dir: Path, *fragments: str) -> None:
    assert code == 2
    message = [line for line in err.splitlines() if line.startswith("error: ")]
    assert message, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in message[0], message[0]
    for artifact in ("adapter", "model", "result.json"):
        assert not (output_dir / artifact).exists()


def test_module_entry_point_rejects_a_bad_config(
    train_config: Callable[..., dict], write_config: Callable[..., Path]
) -> None:
    raw = train_config()
    raw["hyperparameters"]["max_steps"] = 0
    path = write_config(raw)
    proc = subprocess.run(
        [sys.executable, "-m", "mtd_trainer", "train", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{path}: hyperparameters.max_steps: Input should be greater than or equal to 1" in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr


def test_bad_data_line_is_named_and_nothing_is_written(
    train_config: Callable[..., dict],
    write_config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "broken.jsonl"
    data.write_text('{"input": "good", "output": "pos"}\n{"input": "meh", "output": "meh"}\n')
    raw = train_config()
    raw["tasks"][0]["train_path"] = str(data)
    code, err = run_cli("train", write_config(raw), capsys)
    assert_rejected(code, err, Path(raw["output_dir"]), f"{data}:2: output 'meh' is not a label")


@pytest.mark.parametrize("problem", ["missing", "not-causal", "not-a-model"])
def test_bad_base_model_is_named(
    problem: str,
    train_config: Callable[..., dict],
    write_config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = tmp_path / "base"
    if problem != "missing":
        base.mkdir()
    if problem == "not-causal":
        (base / "config.json").write_text(json.dumps({"model_type": "vit"}))
    raw = train_config(base_model=str(base))
    code, err = run_cli("train", write_config(raw), capsys)
    expected = {
        "missing": "does not exist",
        "not-causal": "is a 'vit' model, not a causal language model",
        "not-a-model": "is not a model folder",
    }[problem]
    assert_rejected(code, err, Path(raw["output_dir"]), f"base_model: {base}", expected)


def test_adapter_of_another_base_model_is_refused(
    train_config: Callable[..., dict],
    write_config: Callable[..., Path],
    other_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    adapter = adapter_for(other_model, tmp_path / "other-adapter")
    raw = train_config(init_adapter=str(adapter))
    code, err = run_cli("train", write_config(raw), capsys)
    assert_rejected(
        code, err, Path(raw["output_dir"]), f"init_adapter: {adapter} was trained on {other_model}"
    )


def test_adapter_with_other_shapes_is_refused(
    train_config: Callable[..., dict],
    write_config: Callable[..., Path],
    tiny_model: Path,
    other_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Even when it claims the right base, an adapter whose shapes differ cannot load."""
    adapter = adapter_for(other_model, tmp_path / "relabelled")
    config_file = adapter / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps(config | {"base_model_name_or_path": str(tiny_model)}))
    raw = train_config(init_adapter=str(adapter))
    code, err = run_cli("train", write_config(raw), capsys)
    assert_rejected(code, err, Path(raw["output_dir"]), f"init_adapter: {adapter} does not fit")
    assert "size mismatch" in err


def test_evaluate_via_cli_with_termination_log(
    tiny_model: Path,
    sentiment_data: dict[str, Path],
    write_config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    adapter = adapter_for(tiny_model, tmp_path / "adapter")
    output = tmp_path / "eval.json"
    config = {
        "run_name": "test/eval",
        "base_model": str(tiny_model),
        "adapter": str(adapter),
        "tasks": [sentiment_task(sentiment_data)],
        "max_examples": 4,
        "output_path": str(output),
    }  # no "kind": the verb says it
    log = tmp_path / "termination-log"
    code = main(["evaluate", "--config", str(write_config(config)), "--termination-log", str(log)])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(log.read_text())
    assert (
        summary["tasks"]["sentiment"]
        == json.loads(output.read_text())["tasks"]["sentiment"]["score"]
    )

    del config["tasks"][0]["eval_path"]
    code = main(["evaluate", "--config", str(write_config(config)), "--termination-log", str(log)])
    assert code == 2
    assert "tasks[0].eval_path: task 'sentiment' has no eval data" in capsys.readouterr().err
    assert "eval_path" in json.loads(log.read_text())["error"]


def test_config_of_the_other_kind_is_refused(
    train_config: Callable[..., dict],
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = run_cli("evaluate", write_config(train_config()), capsys)
    assert code == 2 and "kind: 'train' config given to 'evaluate'" in err


def test_hub_names_go_to_from_pretrained_as_ids() -> None:
    from mtd_trainer.modeling import model_source, same_model

    assert model_source("hf://HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"
    assert same_model("hf://org/name", "org/name/")
    assert not same_model("hf://org/name", "hf://org/other")


def test_checkpoint_of_another_run_is_refused(
    train_config: Callable[..., dict],
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mtd_contract.config import TrainConfig
    from mtd_trainer.training import train

    raw = train_config("reused")
    assert train(TrainConfig.model_validate(raw), stop_after_steps=4) is None
    raw["hyperparameters"]["seed"] = 8
    code, err = run_cli("train", write_config(raw), capsys)
    assert_rejected(code, err, Path(raw["output_dir"]), "output_dir: ", "different run")


def test_caches_live_in_the_workspace_not_in_home(
    tmp_path: Path, train_config: Callable[..., dict], write_config: Callable[..., Path]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    raw = train_config(hyperparameters={"max_steps": 2, "checkpoint_every": 2})
    path = write_config(raw)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HF_", "XDG_")) and key != "HOME"
    }
    proc = subprocess.run(
        [sys.executable, "-m", "mtd_trainer", "train", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "HOME": str(home), "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(home.rglob("*")) == []
    assert any((Path(raw["output_dir"]) / ".cache" / "datasets").rglob("*.arrow"))


@pytest.mark.skipif(nf4_unavailable(torch.cuda.is_available()) is None, reason="can run nf4")
def test_nf4_without_cuda_or_bitsandbytes_exits_2_naming_the_field(
    train_config: Callable[..., dict],
    write_config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A pod scheduled where 4-bit cannot run fails at once (exit 2: not retried)."""
    raw = train_config(quantization="nf4")
    log = tmp_path / "termination-log"
    code = main(["train", "--config", str(write_config(raw)), "--termination-log", str(log)])
    err = capsys.readouterr().err
    reason = nf4_unavailable(torch.cuda.is_available())
    assert reason is not None
    assert_rejected(code, err, Path(raw["output_dir"]), "quantization: nf4", reason)
    assert "quantization: nf4" in json.loads(log.read_text())["error"]


def test_nf4_with_full_is_a_config_error(
    train_config: Callable[..., dict],
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = train_config(quantization="nf4", method="full")
    code, err = run_cli("train", write_config(raw), capsys)
    assert_rejected(code, err, Path(raw["output_dir"]), "quantization: nf4", "method full")
