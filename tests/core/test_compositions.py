"""Compositions (`spec.compositions`): validation, planning, steps, rendering, reconcile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mtd_contract.config import ComposeConfig, EvalConfig
from mtd_operator.api.spec import MultiTaskDeploymentSpec
from mtd_operator.core.planner import plan
from mtd_operator.core.problems import InvalidSpec
from mtd_operator.core.profile import CompositionProfile, FileProfile
from mtd_operator.core.reconcile import ServingObservation, StepState, reconcile
from mtd_operator.core.render import Locations, render_step
from mtd_operator.core.steps import pipeline_steps
from mtd_operator.specfile import load_and_profile

from .specs import resource, task, write_jsonl
from .test_planner import profiles_of

NOW = "2026-11-22T00:00:00Z"
COUNTS = {"summary": 300, "translate": 200, "topic": 100}


def tasks() -> list[dict[str, Any]]:
    return [
        task("summary", "generation"),
        task("translate", "generation"),
        task("topic", labels=["sport", "tech"]),
    ]


def composition(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "summarise-translate",
        "tasks": ["summary", "translate"],
        "instruction": "Summarise, in French.",
        "data": {"eval": "data/st/eval.jsonl"},
        "calibration": {"data": "data/st/train.jsonl", "rank": 2, "maxSteps": 5},
        "baseline": {"score": 0.4},
    }
    body.update(extra)
    return body


def spec_of(*compositions: dict[str, Any], **spec: Any) -> MultiTaskDeploymentSpec:
    body = resource(tasks(), **spec)["spec"]
    body.setdefault("filtering", {"isolate": ["summary", "translate"]})
    body["compositions"] = list(compositions)
    return MultiTaskDeploymentSpec.model_validate(body)


def composition_profiles(spec: MultiTaskDeploymentSpec, version: str = "v1"):
    def file(name: str) -> FileProfile:
        return FileProfile(path=f"{name}.jsonl", sha256=f"{name}-{version}", examples=8)

    return {
        c.name: CompositionProfile(
            eval=file(f"{c.name}-eval") if c.data.eval else None,
            calibration=file(f"{c.name}-cal") if c.calibration else None,
        )
        for c in spec.compositions
    }


def plan_of(spec: MultiTaskDeploymentSpec, version: str = "v1"):
    return plan(spec, profiles_of(COUNTS), composition_profiles(spec, version))


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tasks": ["summary", "nope"]}, "['nope'] are not tasks of this spec"),
        ({"tasks": ["summary"]}, "at least 2 items"),
        ({"tasks": ["summary", "summary"]}, "tasks must be distinct; repeated: ['summary']"),
        ({"weights": [1.0]}, "weights has 1 entries; give one per task (2)"),
        ({"weights": [1.0, 0.0]}, "finite and non-zero"),
        ({"name": "topic"}, "is a task's name"),
        ({"name": "generation"}, "reserved for group, baseline or engine models"),
        ({"name": "single-x"}, "reserved for group, baseline or engine models"),
        ({"name": "tgi"}, "reserved for group, baseline or engine models"),
        ({"merge": "average"}, "'linear', 'cat' or 'ties'"),
        ({"density": 0.3}, "density is only used by merge: ties"),
        ({"baseline": {"train": True}}, "a composition takes 'score' only"),
        ({"type": "classification"}, "needs 'labels' with 2 or more entries"),
        ({"labels": ["a", "b"]}, "'labels' is only allowed on classification"),
        ({"metric": "accuracy"}, "metric 'accuracy' is not for generation"),
        ({"data": {}}, "a baseline is compared on held-out data"),
        ({"calibration": {"data": "x.jsonl", "rank": 0}}, "greater than or equal to 1"),
    ],
)
def test_bad_compositions_are_rejected_with_the_reason(change, message):
    with pytest.raises(ValidationError) as info:
        spec_of(composition(**change))
    assert message in str(info.value)


def test_repeated_composition_names_are_rejected():
    with pytest.raises(ValidationError, match="'summarise-translate' is repeated"):
        spec_of(composition(), composition())


def test_tasks_sharing_a_lora_adapter_cannot_be_merged():
    with pytest.raises(ValidationError) as info:
        spec_of(composition(), filtering={"strategy": "taxonomy"})
    text = str(info.value)
    assert "trained together in group 'generation'" in text
    assert "filtering.isolate" in text and "cgcLora" in text


def test_cgc_lora_gives_each_task_its_own_adapter_so_one_group_is_fine():
    spec = spec_of(
        composition(), filtering={"strategy": "taxonomy"}, training={"method": "cgcLora"}
    )
    assert spec.compositions[0].merge_weights == [1.0, 1.0]


def test_full_fine_tuning_has_no_adapters_to_merge():
    with pytest.raises(ValidationError, match=r"training\.method must be lora or cgcLora"):
        spec_of(composition(), training={"method": "full"})


# -- planning ---------------------------------------------------------------------------


def test_a_composition_merges_each_tasks_final_stage():
    spec = spec_of(composition())
    the_plan = plan_of(spec)
    (planned,) = the_plan.compositions
    finals = {t: the_plan.group_of(t).final_stage.hash for t in ("summary", "translate")}
    assert planned.sources == (finals["summary"], finals["translate"])
    assert the_plan.to_json()["compositions"][0]["name"] == "summarise-translate"


def test_compositions_change_no_training_hash_and_plans_without_them_keep_theirs():
    without = plan(spec_of(), profiles_of(COUNTS))
    with_one = plan_of(spec_of(composition()))
    assert [g.evaluation_hash for g in without.groups] == [
        g.evaluation_hash for g in with_one.groups
    ]
    assert "compositions" not in without.to_json()
    assert without.hash != with_one.hash


@pytest.mark.parametrize(
    "change",
    [
        {"weights": [0.5, 1.0]},
        {"merge": "linear"},
        {"calibration": {"data": "data/st/train.jsonl", "rank": 4, "maxSteps": 5}},
        {"calibration": None},
        {"instruction": "Summarise, in German."},
    ],
)
def test_merge_and_calibration_inputs_change_the_composition_hash(change):
    before = plan_of(spec_of(composition())).compositions[0]
    after = plan_of(spec_of(composition(**change))).compositions[0]
    assert before.hash != after.hash
    assert before.evaluation_hash != after.evaluation_hash


def test_new_calibration_data_reruns_the_composition_and_new_eval_data_only_its_evaluation():
    spec = spec_of(composition())
    one, two = plan_of(spec, "v1"), plan_of(spec, "v2")  # both files changed
    assert one.compositions[0].hash != two.compositions[0].hash
    no_calibration = spec_of(composition(calibration=None))
    a, b = plan_of(no_calibration, "v1"), plan_of(no_calibration, "v2")  # eval changed only
    assert a.compositions[0].hash == b.compositions[0].hash
    assert a.compositions[0].evaluation_hash != b.compositions[0].evaluation_hash


def test_a_retrained_source_task_reruns_the_composition():
    spec = spec_of(composition())
    before = plan_of(spec).compositions[0]
    profiles = {**profiles_of(COUNTS), "translate": profiles_of(COUNTS, "v2")["translate"]}
    after = plan(spec, profiles, composition_profiles(spec)).compositions[0]
    assert before.sources[0] == after.sources[0]  # summary untouched
    assert before.hash != after.hash


def test_a_missing_composition_profile_is_an_error():
    with pytest.raises(ValueError, match="no data profile for compositions"):
        plan(spec_of(composition()), profiles_of(COUNTS))


# -- steps and rendering ----------------------------------------------------------------


WHERE = Locations(root="/ws/support", data_dir="/data", base_model="/models/base")


def test_compose_runs_after_its_tasks_final_stages_and_is_evaluated_after():
    spec = spec_of(composition())
    the_plan = plan_of(spec)
    steps = {s.key: s for s in pipeline_steps(the_plan)}
    compose = next(s for s in steps.values() if s.role == "composition")
    evaluation = next(s for s in steps.values() if s.role == "compositionEvaluation")
    assert {steps[k].group for k in compose.after} == {"solo-summary", "solo-translate"}
    assert all(steps[k].role == "stage" for k in compose.after)
    assert evaluation.after == (compose.key,)
    assert compose.result_path == f"{compose.output}/result.json"
    assert evaluation.result_path == evaluation.output


def test_rendered_compose_and_evaluation_configs_are_valid_trainer_configs():
    spec = spec_of(composition(weights=[0.6, 0.4], merge="ties", density=0.3))
    the_plan = plan_of(spec)
    steps = pipeline_steps(the_plan)
    by_key = {s.key: s for s in steps}
    compose = next(s for s in steps if s.role == "composition")
    config = ComposeConfig.model_validate(
        render_step(compose, spec, the_plan, by_key, WHERE, "support")
    )
    finals = [by_key[k] for k in compose.after]
    assert [a.path for a in config.adapters] == [
        f"/ws/support/{step.adapter_path}" for step in finals
    ]
    assert [a.weight for a in config.adapters] == [0.6, 0.4]
    assert (config.merge.method, config.merge.density) == ("ties", 0.3)
    assert config.calibration is not None
    assert config.calibration.train_path == "/data/data/st/train.jsonl"
    assert (config.calibration.rank, config.calibration.max_steps) == (2, 5)
    assert config.calibration.instruction == "Summarise, in French."
    assert config.output_dir == f"/ws/support/{compose.output}"

    evaluation = next(s for s in steps if s.role == "compositionEvaluation")
    scored = EvalConfig.model_validate(
        render_step(evaluation, spec, the_plan, by_key, WHERE, "support")
    )
    assert scored.adapter == f"/ws/support/{compose.output}/adapter"
    (row,) = scored.tasks
    assert (row.name, row.eval_path) == ("summarise-translate", "/data/data/st/eval.jsonl")


def test_under_cgc_lora_each_task_contributes_its_own_exported_adapter():
    spec = spec_of(
        composition(), filtering={"strategy": "taxonomy"}, training={"method": "cgcLora"}
    )
    the_plan = plan_of(spec)
    steps = pipeline_steps(the_plan)
    by_key = {s.key: s for s in steps}
    compose = next(s for s in steps if s.role == "composition")
    (stage_key,) = compose.after  # both tasks are in the generation group
    config = render_step(compose, spec, the_plan, by_key, WHERE, "support")
    output = by_key[stage_key].output
    assert [a.path for a in config.adapters] == [
        f"/ws/support/{output}/adapters/summary",
        f"/ws/support/{output}/adapters/translate",
    ]


# -- reconcile ----------------------------------------------------------------------------


def run_to_end(spec, composition_score: float | None, compose_fails: bool = False):
    the_plan = plan_of(spec)
    observed: dict[str, StepState] = {}
    while True:
        decision = reconcile(spec, the_plan, observed, None, now=NOW)
        if not decision.start:
            return the_plan, observed, decision
        for step in decision.start:
            if step.role == "composition" and compose_fails:
                observed[step.key] = StepState("Failed", "calibration diverged", attempts=3)
                continue
            result: dict[str, Any] = {"rank": 18}
            if step.role == "evaluation":
                group = next(g for g in the_plan.groups if g.name == step.group)
                result = {"tasks": {t: {"score": 0.5} for t in group.tasks}}
            elif step.role == "compositionEvaluation":
                result = {"tasks": {step.composition: {"score": composition_score}}}
            observed[step.key] = StepState("Succeeded", result=result)


def test_a_composition_is_scored_qualified_and_served_like_a_task():
    spec = spec_of(composition(), qualification={"confidence": 0})
    the_plan, observed, decision = run_to_end(spec, composition_score=0.42)
    (row,) = decision.status.compositions
    assert (row.score, row.baseline, row.ratio, row.qualified) == (0.42, 0.4, 1.05, True)
    assert (row.adapter, row.rank, row.calibrated, row.merge) == (
        "summarise-translate",
        18,
        True,
        "cat",
    )
    assert row.tasks == ["summary", "translate"]
    compose = next(s for s in decision.steps if s.role == "composition")
    assert decision.serving is not None
    assert decision.serving.adapters["summarise-translate"] == compose.adapter_path
    # Served, in the status too; and the next observation starts nothing.
    decision = reconcile(
        spec,
        the_plan,
        observed,
        ServingObservation(decision.serving.revision, ready=True, ready_replicas=1),
        now=NOW,
    )
    assert decision.done and not decision.start
    assert "summarise-translate" in decision.status.serving.adapters
    stage_rows = [r for r in decision.status.stages if r.group == "summarise-translate"]
    assert [r.stage for r in stage_rows] == ["composition", "compositionEvaluation"]


def test_an_unqualified_composition_makes_qualification_false():
    spec = spec_of(composition(), qualification={"confidence": 0})
    _, _, decision = run_to_end(spec, composition_score=0.2)
    qualified = {c.type: c for c in decision.status.conditions}["Qualified"]
    assert qualified.status == "False"
    assert "summarise-translate (0.500)" in qualified.message


def test_a_failed_compose_is_reported_and_blocks_only_its_evaluation():
    spec = spec_of(composition())
    _, observed, decision = run_to_end(spec, composition_score=None, compose_fails=True)
    conditions = {c.type: c for c in decision.status.conditions}
    assert conditions["Trained"].reason == "TrainingFailed"
    assert "calibration diverged" in conditions["Trained"].message
    assert decision.failed and decision.serving is None
    blocked = [r for r in decision.status.stages if r.stage == "compositionEvaluation"]
    assert blocked[0].message == "blocked by a failed step"
    assert all(
        state.phase == "Succeeded" for key, state in observed.items() if "compose" not in key
    )


def test_without_eval_data_a_composition_is_served_but_not_scored():
    spec = spec_of(composition(data={}, baseline=None))
    _, _, decision = run_to_end(spec, composition_score=None)
    (row,) = decision.status.compositions
    assert row.score is None and not row.qualified
    assert decision.serving is not None and "summarise-translate" in decision.serving.adapters


# -- profiling through the spec file --------------------------------------------------------


def test_composition_files_are_profiled_with_file_and_line(tmp_path: Path, write_spec):
    doc = resource(tasks(), filtering={"isolate": ["summary", "translate"]})
    doc["spec"]["compositions"] = [composition(baseline=None)]
    path = write_spec(doc)
    write_jsonl(tmp_path / "data/st/eval.jsonl", [{"input": "a", "output": "b"}])
    (tmp_path / "data/st/train.jsonl").write_text('{"input": "a", "output": "b"}\nnot json\n')
    with pytest.raises(InvalidSpec) as info:
        load_and_profile(path)
    (problem,) = info.value.problems
    assert problem.path == "spec.compositions[0].calibration.data"
    assert "train.jsonl:2" in problem.message

    write_jsonl(tmp_path / "data/st/train.jsonl", [{"input": "a", "output": "b"}] * 3)
    _, _, compositions = load_and_profile(path)
    profile = compositions["summarise-translate"]
    assert profile.calibration is not None and profile.calibration.examples == 3
    assert profile.eval is not None and profile.eval.examples == 1
