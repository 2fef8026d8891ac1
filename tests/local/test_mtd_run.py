"""`mtd run` end to end on a tiny model: the whole pipeline, reuse, and adding a task.

Every evaluation scores through the real vLLM (the module's shared engine, conftest.py),
so the scores are computed from the answers the engine gave."""

from __future__ import annotations

import copy
import io
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mtd_contract.digests import folder_digest, folder_files
from mtd_operator.local.engine import LocalEngine
from mtd_operator.local.runner import LocalRun
from mtd_operator.local.serve import read_manifest
from tests.support.net import free_port
from tests.support.tiny_tasks import (
    SOUND_SENTIMENT,
    task,
    tiny_resource,
    write_composition_data,
    write_task_data,
)

from .conftest import MAX_MODEL_LENGTH

pytestmark = pytest.mark.slow


def write_spec(folder: Path, model: Path, tasks: list[dict], **training) -> Path:
    doc = tiny_resource(tasks, str(model), steps=3, **{"learningRate": 0.003, **training})
    doc["spec"]["serving"] = {"maxModelLength": MAX_MODEL_LENGTH}
    path = folder / "mtd.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


SENTIMENT = task("sentiment", "classification", labels=["pos", "neg"], baseline={"train": True})
SOUNDS = task("sounds", "generation", metric="exactMatch", baseline={"score": 0.5})
AGREE = task("agree", "classification", labels=["yes", "no"], baseline={"score": 0.5})


def run(spec: Path, workspace: Path, engine: LocalEngine) -> tuple[LocalRun, str, object]:
    """One `mtd run` without serving, scoring through `engine` (the caller's: it stays up)."""
    out = io.StringIO()
    with LocalRun(spec, workspace, out=out, engine=engine) as local:
        decision = local.run_pipeline()
    assert engine.process is not None and engine.process.poll() is None, "run stopped the engine"
    return local, out.getvalue(), decision


def assert_scored_by_the_engine(local: LocalRun, decision) -> int:
    """Every evaluation that ran scored the engine's answers: each row says so, the answers
    are kept beside the results (one per example), a classification answer is always one of
    the labels (the engine's guided choice), and the score is the one of those answers.
    Returns how many task rows were checked."""
    labels = {t.name: t.labels for t in local.spec.tasks}
    checked = 0
    for step in decision.steps:
        results_file = local.root / step.result_path
        if step.verb != "evaluate" or not results_file.exists():
            continue
        results = json.loads(results_file.read_text())
        answers_file = results_file.with_name(f"{results_file.stem}.answers.json")
        answers = json.loads(answers_file.read_text())
        for name, row in results["tasks"].items():
            assert row["scored_by"] == "engine", (step.key, name)
            assert len(answers[name]) == row["examples"] > 0, (step.key, name)
            if labels.get(name):
                assert set(answers[name]) <= set(labels[name]), (step.key, answers[name])
                each = row["per_example"]
                assert each["predictions"] == [labels[name].index(a) for a in answers[name]]
                hits = [
                    p == r for p, r in zip(each["predictions"], each["references"], strict=True)
                ]
                assert row["accuracy"] == pytest.approx(sum(hits) / len(hits))
            checked += 1
    return checked


def engine_models(engine: LocalEngine) -> list[dict]:
    """What the engine serves (`GET /v1/models`): its model, then each adapter loaded."""
    response = httpx.get(
        f"{engine.url}/v1/models",
        headers={"Authorization": f"Bearer {engine.api_key()}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["data"]


def started(output: str) -> list[str]:
    return [line.split()[1].rstrip(":") for line in output.splitlines() if line.startswith("▶")]


def test_pipeline_reuse_and_adding_a_task(tmp_path, model, shared_engine):
    write_task_data(tmp_path)
    workspace = tmp_path / "ws"
    spec = write_spec(tmp_path, model, [SENTIMENT, SOUNDS])

    local, output, decision = run(spec, workspace, shared_engine)
    assert not decision.failed, output
    # The baseline's, the binary group's and the generation group's evaluations.
    assert assert_scored_by_the_engine(local, decision) == 3
    keys = started(output)
    # baseline + its eval, binary stage1 + stage2 + eval, generation stage2 + eval
    assert len(keys) == 7, keys
    assert keys.index(next(k for k in keys if "binary-stage1" in k)) < keys.index(
        next(k for k in keys if "binary-stage2" in k)
    )
    status = json.loads((workspace / "tiny" / "status.json").read_text())
    assert {c["type"] for c in status["conditions"]} >= {
        "Planned",
        "Trained",
        "Evaluated",
        "Qualified",
        "Serving",
        "Ready",
    }
    rows = {row["name"]: row for row in status["tasks"]}
    for name in ("sentiment", "sounds"):
        row = rows[name]
        assert {
            "name",
            "group",
            "metric",
            "score",
            "baseline",
            "ratio",
            "qualified",
            "adapter",
        } <= set(row)
        assert 0.0 <= row["score"] <= 1.0
    assert rows["sentiment"]["group"] == "binary" and rows["sounds"]["group"] == "generation"
    # The table says which kind each baseline is, and the progress line counts steps.
    table_rows = {line.split()[0]: line.split() for line in output.splitlines() if line.split()}
    assert table_rows["sentiment"][5] == "measured" and table_rows["sounds"][5] == "given"
    assert "[0/7 done]" in output and "[6/7 done, ~" in output
    manifest = read_manifest(workspace / "tiny" / "serving.json")
    for path in manifest["adapters"].values():
        assert (Path(path) / "adapter_config.json").exists()

    # 8 and 6 eval examples: below qualification.minEvalExamples, so no verdict is a promise.
    assert rows["sentiment"]["evalExamples"] == 8 and rows["sounds"]["evalExamples"] == 6
    assert {rows[name]["verdict"] for name in ("sentiment", "sounds")} == {"Inconclusive"}
    assert status["inconclusiveCount"] == 2 and status["qualifiedCount"] == 0
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["EvalSufficient"]["reason"] == "TooFewExamples"
    if rows["sentiment"]["ratio"] is not None:  # paired with its measured baseline
        low, high = rows["sentiment"]["ratioInterval"]
        assert low <= rows["sentiment"]["ratio"] <= high

    # Rerun: everything is reused.
    _, output, decision = run(spec, workspace, shared_engine)
    assert started(output) == [] and not decision.failed

    # The point rule (confidence 0) judges the same results again, retraining nothing.
    point = write_spec(tmp_path, model, [SENTIMENT, SOUNDS])
    doc = yaml.safe_load(point.read_text(encoding="utf-8"))
    doc["spec"]["qualification"] = {"confidence": 0}
    point.write_text(yaml.safe_dump(doc), encoding="utf-8")
    _, output, decision = run(point, workspace, shared_engine)
    assert started(output) == [] and not decision.failed
    for row in decision.status.tasks:
        expected = (
            None if row.ratio is None else ("Qualified" if row.ratio >= 0.99 else "NotQualified")
        )
        assert row.verdict == expected and row.ratio_interval is None

    # A new binary task retrains the binary group from stage 2 only (it is low-resource).
    spec = write_spec(tmp_path, model, [SENTIMENT, SOUNDS, AGREE])
    local, output, decision = run(spec, workspace, shared_engine)
    keys = started(output)
    assert keys and all("-binary-" in key for key in keys), keys
    assert not any("stage1" in key for key in keys), keys
    assert not decision.failed, output
    # The retrained binary group (sentiment and agree) was scored through the same engine.
    assert assert_scored_by_the_engine(local, decision) >= 4


def test_a_failing_step_is_reported_and_other_groups_continue(tmp_path, model, shared_engine):
    write_task_data(tmp_path)
    bad = task("sounds", "generation", metric="exactMatch")
    spec = write_spec(tmp_path, Path(str(model)), [SENTIMENT, bad])
    # Break the generation data after profiling would pass: the trainer must fail cleanly.
    with LocalRun(spec, tmp_path / "ws", out=io.StringIO(), engine=shared_engine) as local:
        (tmp_path / "data" / "sounds.train.jsonl").write_text('{"input": "x"}\n')
        decision = local.run_pipeline()
    assert decision.failed
    trained = next(c for c in decision.status.conditions if c.type == "Trained")
    assert trained.reason == "TrainingFailed" and "sounds.train.jsonl" in trained.message
    # The binary group went on to be trained and evaluated.
    rows = {r.name: r for r in decision.status.tasks}
    assert rows["sentiment"].score is not None
    assert assert_scored_by_the_engine(local, decision) >= 2  # the baseline's and its own


def test_cgc_lora_end_to_end_serves_one_exported_adapter_per_task(tmp_path, model, shared_engine):
    write_task_data(tmp_path)
    spec = write_spec(
        tmp_path,
        model,
        [SENTIMENT, AGREE, SOUNDS],
        method="cgcLora",
        cgcLora={"commonExperts": 1, "specificExperts": 1, "expertRank": 2},
    )
    local, output, decision = run(spec, tmp_path / "ws", shared_engine)
    assert not decision.failed, output
    manifest = read_manifest(tmp_path / "ws" / "tiny" / "serving.json")
    # Stage 2 of the binary group continued from stage 1's experts; every task is served by
    # its own exported LoRA adapter (the baseline task may be served by its baseline), under
    # the task's name and a hash of the folder (the name the engine serves it by).
    served_by = {row["name"]: row["adapter"] for row in manifest["catalogue"]["tasks"]}
    assert set(served_by.values()) <= set(manifest["adapters"])
    assert served_by["agree"].startswith("agree-") and served_by["sounds"].startswith("sounds-")
    for name, path in manifest["adapters"].items():
        config = json.loads((Path(path) / "adapter_config.json").read_text())
        assert config["peft_type"] == "LORA", name
    rows = {row.name: row for row in decision.status.tasks}
    assert all(row.score is not None for row in rows.values())
    # Each task was scored on its own exported adapter, loaded into the engine by name.
    assert assert_scored_by_the_engine(local, decision) >= 3
    served = engine_models(shared_engine)
    for path in manifest["adapters"].values():
        assert any(model.get("root") == path for model in served), path


@dataclass
class Composed:
    """A finished pipeline with every kind of step: training, evaluation, composition."""

    spec: Path
    doc: dict
    workspace: Path
    local: LocalRun
    output: str
    decision: Any


@pytest.fixture(scope="module")
def composed(tmp_path_factory, model, shared_engine) -> Composed:
    """One composition pipeline for the module (minutes): its test checks the first run,
    then changes it; the damage test restores every file it damages."""
    folder = tmp_path_factory.mktemp("composed")
    write_task_data(folder)
    write_composition_data(folder)
    spec = write_spec(folder, model, [SENTIMENT, SOUNDS])
    doc = yaml.safe_load(spec.read_text())
    doc["spec"]["compositions"] = [copy.deepcopy(SOUND_SENTIMENT)]
    doc["spec"]["serving"]["engine"] = "tgi"  # TGI: the composed adapter is padded
    spec.write_text(yaml.safe_dump(doc), encoding="utf-8")
    workspace = folder / "ws"
    local, output, decision = run(spec, workspace, shared_engine)
    return Composed(spec, doc, workspace, local, output, decision)


def test_a_composition_is_merged_calibrated_scored_and_served(composed, shared_engine):
    spec, doc, workspace = composed.spec, copy.deepcopy(composed.doc), composed.workspace
    local, output, decision = composed.local, composed.output, composed.decision
    assert not decision.failed, output
    keys = started(output)
    compose_key = next(k for k in keys if k.startswith("compose-sound-sentiment-"))
    # Composed after both tasks' final stages, evaluated after it was composed.
    assert keys.index(compose_key) > max(i for i, k in enumerate(keys) if "-stage2-" in k)
    assert any(
        k.startswith("compose-eval-sound-sentiment-") for k in keys[keys.index(compose_key) :]
    )

    (row,) = decision.status.compositions
    assert row.score is not None and 0.0 <= row.score <= 1.0
    # The rank-16 composed adapter was scored through the engine like any task's.
    assert assert_scored_by_the_engine(local, decision) >= 4
    assert row.baseline == 0.05 and row.ratio is not None
    # cat of two rank-4 adapters plus the rank-2 correction is 10; TGI serves it at 16
    assert row.rank == 16
    step = next(s for s in decision.steps if s.key == compose_key)
    result = json.loads((local.root / step.result_path).read_text())
    calibration = result["calibration"]
    assert calibration["steps"] == 3 and calibration["loss_after"] < calibration["loss_before"]

    manifest = read_manifest(workspace / "tiny" / "serving.json")
    catalogue = {row["name"]: row for row in manifest["catalogue"]["tasks"]}
    # Served under its name and a hash of its folder (a new merge gets a new name).
    served_name = catalogue["sound-sentiment"]["adapter"]
    assert served_name.startswith("sound-sentiment-")
    adapter = Path(manifest["adapters"][served_name])
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 16
    assert result["natural_rank"] == 10
    assert catalogue["sound-sentiment"] == {
        "name": "sound-sentiment",
        "kind": "composition",
        "type": "generation",
        "instruction": "Say the sound, then the sentiment.",
        "metric": "rougeL",
        "adapter": served_name,
        "servedBy": "composition",
        "verdict": catalogue["sound-sentiment"]["verdict"],
        # What the composed folder's files hash to, as its step recorded them.
        "adapterDigest": folder_digest(folder_files(adapter)),
    }
    assert manifest["digests"][served_name] == catalogue["sound-sentiment"]["adapterDigest"]
    # The catalogue the gateway follows is the one the operator writes to its ConfigMap.
    written = json.loads((workspace / "tiny" / "catalogue.json").read_text())
    assert written == manifest["catalogue"] and written["revision"] == manifest["revision"]
    status = json.loads((workspace / "tiny" / "status.json").read_text())
    assert status["compositions"][0]["name"] == "sound-sentiment"
    # The spec says TGI (for its padded ranks); locally the real vLLM serves, and says so.
    assert status["serving"]["engine"] == "vllm"
    assert status["serving"]["adapterUpdate"] == "RuntimeLoad"

    # New merge weights: only the composition and its evaluation run again.
    doc["spec"]["compositions"][0]["weights"] = [0.5, 1.0]
    spec.write_text(yaml.safe_dump(doc), encoding="utf-8")
    _, output, decision = run(spec, workspace, shared_engine)
    keys = started(output)
    assert len(keys) == 2 and all(k.startswith("compose-") for k in keys), keys
    assert not decision.failed, output
    manifest = read_manifest(workspace / "tiny" / "serving.json")
    (renamed,) = [
        row["adapter"] for row in manifest["catalogue"]["tasks"] if row["name"] == "sound-sentiment"
    ]
    assert renamed != served_name and renamed.startswith("sound-sentiment-")
    # Scored through the same engine, which holds the earlier merge too (another folder,
    # so another name: the new weights never hide behind the old name).
    roots = {model.get("root") for model in engine_models(shared_engine)}
    assert {manifest["adapters"][renamed], str(adapter)} <= roots


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04
    path.write_bytes(bytes(data))


def _malformed_json(path: Path) -> None:
    path.write_text(path.read_text(encoding="utf-8") + "\n{", encoding="utf-8")


def _nan(path: Path) -> None:
    """The first value of the file's first floating-point tensor becomes a NaN (its size,
    and so the safetensors header, unchanged)."""
    data = bytearray(path.read_bytes())
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    patterns = {"F32": b"\x00\x00\xc0\x7f", "BF16": b"\xc0\x7f", "F16": b"\x00\x7e"}
    entry = next(e for e in header.values() if e.get("dtype") in patterns)
    start = 8 + length + entry["data_offsets"][0]
    nan = patterns[entry["dtype"]]
    data[start : start + len(nan)] = nan
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncate": _truncate,
    "delete": Path.unlink,
    "bit flip": _flip_a_bit,
    "NaN": _nan,
    "malformed JSON": _malformed_json,
}


def _ways(path: Path) -> list[str]:
    kind = {".safetensors": "NaN", ".json": "malformed JSON"}[path.suffix]
    return ["truncate", "delete", "bit flip", kind]


def _put_back(root: Path, saved: dict[Path, bytes]) -> None:
    """Every output a check moved aside goes back, and every damaged file gets its bytes."""
    for aside in sorted(root.rglob("*.damaged-*")):
        original = aside.with_name(aside.name.split(".damaged-")[0])
        if original.is_dir():
            shutil.rmtree(original)
        elif original.exists():
            original.unlink()
        aside.rename(original)
    for path, data in saved.items():
        path.write_bytes(data)


def test_every_damaged_artifact_is_rebuilt_or_refused_never_served(composed, shared_engine):
    """Each file each kind of step writes (training: weights, adapter config, result;
    composition: the same; evaluation: results, answers), damaged in each way. The next
    run then redoes exactly the damaged step and the evaluations that scored its adapter
    (nothing else), and `mtd serve` refuses a damaged served adapter before loading it."""
    from mtd_operator.core.steps import pipeline_steps
    from mtd_operator.local.serve import ServingError, check_adapters

    root = composed.workspace / "tiny"
    fresh = LocalRun(composed.spec, composed.workspace, out=io.StringIO(), engine=shared_engine)
    steps = pipeline_steps(fresh.plan)
    assert set(fresh.observe(steps)) == {s.key for s in steps}, "the pipeline is not done"
    manifest = read_manifest(root / "serving.json")
    served = {Path(folder) for folder in manifest["adapters"].values()}

    def scored_by(step) -> set[str]:
        """The evaluations whose config scores an adapter inside `step`'s output."""
        found = set()
        for other in steps:
            if other.verb != "evaluate":
                continue
            config = json.loads((root / other.config_path).read_text())
            folders = [config.get("adapter"), *(config.get("task_adapters") or {}).values()]
            if any(f and f.startswith(f"{root}/{step.output}/") for f in folders):
                found.add(other.key)
        return found

    train = next(s for s in steps if s.verb == "train" and scored_by(s) and s.stage == "stage2")
    compose = next(s for s in steps if s.verb == "compose")
    evaluation = next(s for s in steps if s.key in scored_by(compose))
    results = root / evaluation.output
    targets = {
        train: ["adapter/adapter_model.safetensors", "adapter/adapter_config.json", "result.json"],
        compose: [
            "adapter/adapter_model.safetensors",
            "adapter/adapter_config.json",
            "result.json",
        ],
    }
    cases = [
        (step, root / step.output / name, way)
        for step, names in targets.items()
        for name in names
        for way in _ways(root / step.output / name)
    ]
    answers = results.with_name(f"{results.stem}.answers.json")
    cases += [(evaluation, path, way) for path in (results, answers) for way in _ways(path)]
    assert len(cases) == 32

    for step, path, way in cases:
        case = f"{step.key}: {path.relative_to(root)}, {way}"
        saved = {path: path.read_bytes()}
        try:
            DAMAGE[way](path)
            in_served = any(folder in path.parents for folder in served)
            if in_served:
                with pytest.raises(ServingError, match="refused"):
                    check_adapters(manifest)
            local = LocalRun(
                composed.spec, composed.workspace, out=io.StringIO(), engine=shared_engine
            )
            redo = {s.key for s in steps} - set(local.observe(steps))
            expected = {step.key}
            if path.name != "result.json" or way != "delete":  # the output is moved aside
                expected |= scored_by(step) if step.verb != "evaluate" else set()
            assert redo == expected, case
            if step.verb == "evaluate":
                # A damaged results file never reaches the status: its step is simply redone.
                assert evaluation.key not in local.observe(steps), case
        finally:
            _put_back(root, saved)
        assert set(fresh.observe(steps)) == {s.key for s in steps}, f"not restored: {case}"

    # One of them through a real run: a NaN in the served composed adapter. The run redoes
    # the composition and its evaluation only, and serves a whole adapter again.
    weights = root / compose.output / "adapter" / "adapter_model.safetensors"
    _nan(weights)
    _, output, decision = run(composed.spec, composed.workspace, shared_engine)
    assert not decision.failed, output
    assert sorted(started(output)) == sorted([compose.key, evaluation.key]), output
    assert "cannot be reused, rebuilding" in output
    check_adapters(read_manifest(root / "serving.json"))


def test_full_fine_tuning_is_evaluated_and_served_until_ready(tmp_path, model, shared_engine):
    """training.method full: stage 2 and evaluation read the model the trainer wrote
    (`<out>/model`); the engine is restarted on that model to score it, and serves that
    model itself (no adapters), answering for its group through the gateway."""
    from mtd_operator.client import MultiTaskClient
    from mtd_operator.local.serve import start_serving

    write_task_data(tmp_path)
    spec = write_spec(tmp_path, model, [AGREE, SOUNDS], method="full")
    doc = yaml.safe_load(spec.read_text())
    doc["spec"]["filtering"] = {"strategy": "none"}
    spec.write_text(yaml.safe_dump(doc), encoding="utf-8")
    local, output, decision = run(spec, tmp_path / "ws", shared_engine)
    assert not decision.failed, output
    (group,) = {row.group for row in decision.status.tasks}
    assert decision.serving.adapters == {} and decision.serving.model_name == group
    manifest = read_manifest(local.root / "serving.json")
    assert manifest["adapters"] == {} and manifest["modelId"] == group
    assert manifest["baseModel"].endswith("/model")
    assert (Path(manifest["baseModel"]) / "model.safetensors").exists()
    assert all(row.score is not None for row in decision.status.tasks)
    # Scored by the engine running the fine-tuned model (it replaced the base model).
    assert assert_scored_by_the_engine(local, decision) == 2
    assert shared_engine.model == manifest["baseModel"]
    process = shared_engine.process

    server, url = start_serving(
        local.root / "serving.json", shared_engine, "127.0.0.1", free_port()
    )
    try:
        assert shared_engine.process is process, "not restarted: it already ran that model"
        (served,) = engine_models(shared_engine)  # the model, no adapter
        assert served["id"] == manifest["baseModel"]
        decision = local.mark_serving(decision.serving.revision, url)
        ready = next(c for c in decision.status.conditions if c.type == "Ready")
        assert ready.status == "True", ready
        with MultiTaskClient(url) as client:
            assert client.via_gateway
            answer = client.predict("agree", "Is it so?")
            assert answer.output in ("yes", "no") and answer.adapter is None
            assert client.predict("sounds", "cat").output is not None
    finally:
        server.should_exit = True
    with pytest.raises(httpx.HTTPError):
        for _ in range(100):  # the gateway thread stops within a few polls
            httpx.get(f"{url}/tasks", timeout=2)
            time.sleep(0.1)
