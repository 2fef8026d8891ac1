"""The reconcile core: order of steps, failure handling, qualification, serving, status."""

from __future__ import annotations

import pytest

from mtd_contract.config import EvalConfig, TrainConfig
from mtd_operator.api.spec import MultiTaskDeploymentSpec
from mtd_operator.core.planner import plan
from mtd_operator.core.reconcile import ServingObservation, StepState, reconcile
from mtd_operator.core.render import Locations, render_step
from mtd_operator.core.steps import pipeline_steps

from .specs import task
from .test_planner import profiles_of

NOW = "2026-11-22T00:00:00Z"
LATER = "2026-11-22T01:00:00Z"


def make_spec(**overrides) -> MultiTaskDeploymentSpec:
    tasks = [
        task("big", labels=["no", "yes"], baseline={"score": 0.8}),
        task("small", labels=["a", "b"], baseline={"train": True}),
        task("gen", "generation", baseline={"score": 0.5}),
    ]
    body = {
        "baseModel": {"uri": "/models/base"},
        "tasks": tasks,
        "training": {"highResourceMinExamples": 1000},
    }
    body.update(overrides)
    return MultiTaskDeploymentSpec.model_validate(body)


COUNTS = {"big": 5000, "small": 40, "gen": 100}


def decide(spec, observed, serving=None, previous=None, now=NOW):
    return reconcile(
        spec,
        plan(spec, profiles_of(COUNTS)),
        observed,
        serving,
        previous=previous,
        generation=3,
        now=now,
    )


def succeed_all(spec, scores: dict[str, float], baseline_scores: dict[str, float]):
    """Run the pipeline to completion, step by step, as a driver would."""
    observed: dict[str, StepState] = {}
    order: list[str] = []
    while True:
        decision = decide(spec, observed)
        if not decision.start:
            return observed, order, decision
        for step in decision.start:
            order.append(step.key)
            result = {"adapter": step.adapter_path}
            if step.role == "evaluation":
                group = next(
                    g for g in plan(spec, profiles_of(COUNTS)).groups if g.name == step.group
                )
                result = {"tasks": {t: {"score": scores[t]} for t in group.tasks}}
            elif step.role == "baselineEvaluation":
                result = {"tasks": {step.task: {"score": baseline_scores[step.task]}}}
            observed[step.key] = StepState("Succeeded", result=result)


def test_first_pass_starts_every_step_without_dependencies():
    decision = decide(make_spec(), {})
    keys = sorted(s.key.split("-")[0] + "-" + (s.stage or s.role) for s in decision.start)
    # stage 1 of binary, stage 2 of generation (no high-resource task), the baseline training.
    assert keys == ["baseline-baseline", "train-stage1", "train-stage2"]
    ready = {c.type: c for c in decision.status.conditions}["Ready"]
    assert ready.status == "False" and ready.reason == "Training"


def test_running_steps_are_not_started_twice():
    spec = make_spec()
    first = decide(spec, {})
    observed = {s.key: StepState("Running") for s in first.start}
    assert decide(spec, observed).start == []


def test_pipeline_order_and_completion():
    spec = make_spec(qualification={"confidence": 0})  # results carry no per-example data
    observed, order, decision = succeed_all(
        spec, {"big": 0.81, "small": 0.5, "gen": 0.49}, {"small": 0.7}
    )
    # stage 2 of binary only after its stage 1; evaluations after the final stage.
    binary = [k for k in order if "-binary-" in k]
    assert [k.split("-")[2] if k.startswith("train") else "eval" for k in binary] == [
        "stage1",
        "stage2",
        "eval",
    ]
    assert decision.serving is not None
    rows = {r.name: r for r in decision.status.tasks}
    assert rows["big"].ratio == pytest.approx(0.81 / 0.8) and rows["big"].qualified
    assert rows["gen"].ratio == pytest.approx(0.98) and not rows["gen"].qualified
    # Unqualified with a baseline adapter → served by the baseline adapter.
    assert rows["small"].baseline == 0.7 and not rows["small"].qualified
    assert rows["small"].adapter == "single-small" and rows["small"].served_by == "baseline"
    assert rows["gen"].adapter == "generation" and rows["gen"].served_by == "multiTask"
    assert set(decision.serving.adapters) == {"binary", "generation", "single-small"}
    assert decision.status.qualified == "1/3"
    conditions = {c.type: c for c in decision.status.conditions}
    assert conditions["Trained"].status == "True"
    assert conditions["Evaluated"].status == "True"
    assert (
        conditions["Qualified"].status == "False"
        and "gen (0.980)" in conditions["Qualified"].message
    )
    assert conditions["Serving"].reason == "RollingOut"
    assert conditions["Ready"].status == "False"

    served = ServingObservation(revision=decision.serving.revision, ready=True, ready_replicas=1)
    final = decide(spec, observed, served)
    conditions = {c.type: c for c in final.status.conditions}
    assert conditions["Serving"].status == "True" and conditions["Ready"].status == "True"
    assert final.done


def test_policy_off_serves_the_group_adapter():
    spec = make_spec(qualification={"serveBaselineForUnqualified": False, "confidence": 0})
    _, _, decision = succeed_all(spec, {"big": 0.9, "small": 0.1, "gen": 0.9}, {"small": 0.9})
    rows = {r.name: r for r in decision.status.tasks}
    assert rows["small"].adapter == "binary"
    assert set(decision.serving.adapters) == {"binary", "generation"}


def test_a_failed_stage_blocks_its_group_only():
    spec = make_spec()
    first = decide(spec, {})
    stage1 = next(s for s in first.start if s.stage == "stage1")
    observed = {s.key: StepState("Succeeded", result={}) for s in first.start}
    observed[stage1.key] = StepState("Failed", "OOMKilled: out of memory", attempts=3)
    decision = decide(spec, observed)
    assert all(s.group != "binary" for s in decision.start)
    assert any(s.group == "generation" for s in decision.start)
    conditions = {c.type: c for c in decision.status.conditions}
    assert conditions["Trained"].reason == "TrainingFailed"
    assert "OOMKilled" in conditions["Trained"].message
    assert conditions["Ready"].reason == "Failed"
    blocked = [r for r in decision.status.stages if r.message == "blocked by a failed step"]
    assert {r.group for r in blocked} == {"binary"}
    assert decision.serving is None and decision.failed


def test_last_transition_time_changes_only_on_a_flip():
    spec = make_spec()
    first = decide(spec, {})
    again = decide(spec, {}, previous=first.status.conditions, now=LATER)
    assert [c.last_transition_time for c in again.status.conditions] == [NOW] * len(
        again.status.conditions
    )
    observed, _, _ = succeed_all(spec, {"big": 1, "small": 1, "gen": 1}, {"small": 1})
    done = decide(spec, observed, previous=first.status.conditions, now=LATER)
    times = {c.type: c.last_transition_time for c in done.status.conditions}
    assert times["Planned"] == NOW and times["Trained"] == LATER


def test_reconcile_is_deterministic():
    spec = make_spec()
    assert decide(spec, {}).status == decide(spec, {}).status


def test_cost_figures():
    decision = reconcile(
        make_spec(serving={"replicas": 2}),
        plan(make_spec(), profiles_of(COUNTS)),
        {},
        None,
        now=NOW,
        gpus_per_replica=1,
    )
    cost = decision.status.cost
    assert (cost.serving_deployments, cost.serving_gpus, cost.single_task_deployments) == (1, 2, 3)
    assert cost.saving_percent == pytest.approx(66.7)


def test_rendered_configs_satisfy_the_trainer_contract():
    spec = make_spec()
    result = plan(spec, profiles_of(COUNTS))
    steps = pipeline_steps(result)
    by_key = {s.key: s for s in steps}
    where = Locations(
        root="/workspace/ns/support", data_dir="/workspace/data", base_model="/models/base"
    )
    for step in steps:
        config = render_step(step, spec, result, by_key, where, "support")
        model = TrainConfig if step.verb == "train" else EvalConfig
        parsed = model.model_validate(config)
        if step.stage == "stage2" and step.group == "binary":
            assert (
                parsed.init_adapter == "/workspace/ns/support/" + by_key[step.after[0]].adapter_path
            )
            assert parsed.sampling.strategy == "temperature"
        if step.verb == "train":
            assert all(t.train_path.startswith("/workspace/data/") for t in parsed.tasks)


def test_cgc_lora_renders_experts_continues_from_cgc_and_serves_one_adapter_per_task():
    spec = make_spec(
        training={
            "highResourceMinExamples": 1000,
            "method": "cgcLora",
            "cgcLora": {"commonExperts": 1, "specificExperts": 2, "expertRank": 2},
        }
    )
    result = plan(spec, profiles_of(COUNTS))
    steps = pipeline_steps(result)
    by_key = {s.key: s for s in steps}
    where = Locations(root="/ws/support", data_dir="/ws/data", base_model="/models/base")
    for step in steps:
        config = render_step(step, spec, result, by_key, where, "support")
        if step.role == "stage":
            parsed = TrainConfig.model_validate(config)
            assert parsed.method == "cgcLora" and parsed.cgc.specific_experts == 2
            if step.stage == "stage2" and step.after:
                assert parsed.init_adapter == f"/ws/support/{by_key[step.after[0]].output}/cgc"
        elif step.role == "baseline":
            assert TrainConfig.model_validate(config).method == "lora"
        elif step.role == "evaluation":
            parsed = EvalConfig.model_validate(config)
            assert parsed.adapter is None
            assert all(p.endswith(f"/adapters/{t}") for t, p in parsed.task_adapters.items())
    _, _, decision = succeed_all(spec, {"big": 0.9, "small": 0.9, "gen": 0.9}, {"small": 0.5})
    assert set(decision.serving.adapters) == {"big", "small", "gen"}
    assert decision.serving.adapters["big"].endswith("/adapters/big")
    assert {r.name: r.adapter for r in decision.status.tasks} == {
        "big": "big", "small": "small", "gen": "gen"
    }  # fmt: skip


def test_cgc_lora_needs_an_expert():
    with pytest.raises(ValueError, match="at least 1"):
        make_spec(
            training={"method": "cgcLora", "cgcLora": {"commonExperts": 0, "specificExperts": 0}}
        )


def test_changing_experts_changes_training_hashes():
    one = plan(make_spec(training={"method": "cgcLora"}), profiles_of(COUNTS))
    two = plan(
        make_spec(training={"method": "cgcLora", "cgcLora": {"expertRank": 8}}), profiles_of(COUNTS)
    )
    assert {s.hash for s in one.stages()}.isdisjoint({s.hash for s in two.stages()})
