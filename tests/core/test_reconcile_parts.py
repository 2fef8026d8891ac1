"""The named parts `reconcile` is made of, each on its own: steps, scores, rows, desired
serving, conditions (with the transition-time carry) and cost."""

from __future__ import annotations

from mtd_operator.api.status import Condition
from mtd_operator.core import conditions
from mtd_operator.core.conditions import Blocked, Check, carry
from mtd_operator.core.desired import desired_serving, served_adapters
from mtd_operator.core.observation import ServingObservation, StepState
from mtd_operator.core.planner import plan
from mtd_operator.core.rows import cost_status, stage_rows, task_rows
from mtd_operator.core.scores import collect_scores
from mtd_operator.core.steps import final_stage_key, final_stage_steps, pipeline_steps

from .test_planner import profiles_of
from .test_reconcile import COUNTS, NOW, make_spec

LATER = "2026-11-22T01:00:00Z"


def _plan(spec):
    return plan(spec, profiles_of(COUNTS))


def test_final_stage_is_the_last_training_step_of_each_group():
    spec = make_spec()
    the_plan = _plan(spec)
    steps = pipeline_steps(the_plan)
    finals = final_stage_steps(the_plan, steps)
    assert set(finals) == {g.name for g in the_plan.groups}
    for group in the_plan.groups:
        trained = [s for s in steps if s.role == "stage" and s.group == group.name]
        assert finals[group.name] is trained[-1]
        assert finals[group.name].key == final_stage_key(group)
        evaluation = next(s for s in steps if s.role == "evaluation" and s.group == group.name)
        assert evaluation.after == (final_stage_key(group),)


def test_collect_scores_reads_only_succeeded_steps_by_role():
    spec = make_spec()
    steps = pipeline_steps(_plan(spec))
    evaluation = next(s for s in steps if s.role == "evaluation")
    baseline = next(s for s in steps if s.role == "baseline")
    baseline_eval = next(s for s in steps if s.role == "baselineEvaluation")
    states = {
        evaluation.key: StepState("Succeeded", result={"tasks": {"big": {"score": 0.9}}}),
        baseline.key: StepState("Succeeded", result={"adapter": "x"}),
        baseline_eval.key: StepState("Running", result={"tasks": {"small": {"score": 0.1}}}),
    }
    scores = collect_scores(steps, states)
    assert scores.group == {"big": {"score": 0.9}}
    assert scores.baseline == {}  # still running: not read
    assert scores.baseline_adapters == {"small": baseline}


def test_task_rows_name_an_adapter_only_once_the_pipeline_is_done():
    spec = make_spec()
    the_plan = _plan(spec)
    scores = collect_scores(pipeline_steps(the_plan), {})
    waiting = task_rows(spec, the_plan, scores, pipeline_done=False)
    assert [r.adapter for r in waiting] == [None, None, None]
    assert [r.served_by for r in waiting] == [None, None, None]
    done = task_rows(spec, the_plan, scores, pipeline_done=True)
    assert [r.adapter for r in done] == [the_plan.group_of(r.name).name for r in done]
    assert {r.served_by for r in done} == {"multiTask"}


def _all_succeeded(the_plan, steps, scores: dict[str, float], baseline: dict[str, float]):
    states = {}
    for step in steps:
        result: dict = {}
        if step.role == "evaluation":
            tasks = next(g for g in the_plan.groups if g.name == step.group).tasks
            result = {"tasks": {t: {"score": scores[t]} for t in tasks}}
        elif step.role == "baselineEvaluation":
            result = {"tasks": {step.task: {"score": baseline[step.task]}}}
        states[step.key] = StepState("Succeeded", result=result)
    return states


def test_unqualified_task_is_served_by_its_baseline_adapter():
    spec = make_spec(qualification={"confidence": 0})  # the point ratio decides
    the_plan = _plan(spec)
    steps = pipeline_steps(the_plan)
    states = _all_succeeded(the_plan, steps, {"big": 0.9, "small": 0.1, "gen": 0.9}, {"small": 0.8})
    scores = collect_scores(steps, states)
    rows = {r.name: r for r in task_rows(spec, the_plan, scores, pipeline_done=True)}
    assert rows["small"].verdict == "NotQualified"
    assert (rows["small"].served_by, rows["big"].served_by) == ("baseline", "multiTask")
    finals = final_stage_steps(the_plan, steps)
    adapters = served_adapters(spec, the_plan, list(rows.values()), scores, finals)
    baseline = scores.baseline_adapters["small"]
    assert adapters[rows["small"].adapter] == baseline.adapter_path
    assert adapters[rows["big"].adapter] == finals[rows["big"].group].adapter_path


def test_desired_revision_follows_the_adapter_folders_not_their_order():
    spec = make_spec()
    one = desired_serving(spec, {"a": "train/a/adapter", "b": "train/b/adapter"})
    same = desired_serving(spec, {"b": "train/b/adapter", "a": "train/a/adapter"})
    other = desired_serving(spec, {"a": "train/a2/adapter", "b": "train/b/adapter"})
    assert one == same
    assert list(one.adapters) == ["a", "b"]
    assert other.revision != one.revision


def test_carry_keeps_the_time_while_the_status_stays():
    first = carry([Check("Ready", False, "Waiting", "")], None, 1, NOW)
    same = carry([Check("Ready", False, "Training", "1/2")], first, 2, LATER)
    flipped = carry([Check("Ready", True, "Ready", "")], same, 2, LATER)
    assert first[0].last_transition_time == NOW
    assert same[0].last_transition_time == NOW and same[0].observed_generation == 2
    assert flipped[0].last_transition_time == LATER


def test_blocked_statuses_say_why_in_planned_and_ready():
    invalid = Blocked.invalid_spec(["spec.tasks: at least 1 item"]).status(None, 4, NOW)
    by_type = {c.type: c for c in invalid.conditions}
    assert set(by_type) == {"Planned", "Ready"}
    assert by_type["Planned"].status == "False" and by_type["Planned"].reason == "InvalidSpec"
    assert by_type["Ready"].message == "spec.tasks: at least 1 item"
    assert invalid.observed_generation == 4
    profiling = Blocked.profiling().status(None, 4, NOW)
    assert [c.status for c in profiling.conditions] == ["Unknown", "False"]
    # Profiling → InvalidData: Planned flips (a new time), Ready stays False (its time kept).
    previous = [c.model_copy(update={"last_transition_time": NOW}) for c in profiling.conditions]
    data = Blocked.invalid_data("tasks[0]: empty file").status(previous, 4, LATER)
    times = {c.type: c.last_transition_time for c in data.conditions}
    assert times == {"Planned": LATER, "Ready": NOW}
    assert all(isinstance(c, Condition) for c in data.conditions)


def test_progress_counts_fails_and_finishes():
    spec = make_spec()
    train = [s for s in pipeline_steps(_plan(spec)) if s.verb == "train"]
    assert conditions.progress("Trained", train, {}).reason == "Training"
    failed = conditions.progress("Trained", train, {train[0].key: StepState("Failed", "oom")})
    assert (failed.status, failed.reason) == (False, "TrainingFailed")
    assert failed.message == f"{train[0].key}: oom"
    done = conditions.progress("Trained", train, {s.key: StepState("Succeeded") for s in train})
    assert done == Check(
        "Trained", True, "Trained", f"{len(train)}/{len(train)} training runs done"
    )


def test_serving_check_and_ready():
    spec = make_spec()
    waiting = conditions.serving_check(spec, None, 0, None)
    assert (waiting.status, waiting.reason) == (False, "Waiting")
    old = ServingObservation(revision="old", ready=True, message="")
    rolling = conditions.serving_check(spec, "new", 2, old)
    assert rolling.reason == "RollingOut" and "new" in rolling.message
    serving = conditions.serving_check(spec, "new", 2, ServingObservation("new", True))
    assert serving.status is True
    ready = conditions.ready([rolling], None, False, 1, 3)
    assert (ready.reason, ready.message) == (rolling.reason, rolling.message)
    assert conditions.ready([serving], "x: failed", False, 1, 3).reason == "Failed"
    assert conditions.ready([serving], None, True, 1, 3).message == "1/3 tasks qualified"


def test_a_stopped_server_is_not_serving_and_not_ready():
    """A local run that ended (or failed) after serving: status.json says so, and names
    no endpoint, whatever revision was served."""
    spec = make_spec()
    gone = ServingObservation(None, False, message="mtd run failed: boom", stopped=True)
    stopped = conditions.serving_check(spec, "new", 2, gone)
    assert (stopped.status, stopped.reason, stopped.message) == (
        False, "Stopped", "mtd run failed: boom"
    )  # fmt: skip
    ready = conditions.ready([stopped], None, False, 3, 3)
    assert (ready.status, ready.reason) == (False, "Stopped")


def test_stage_rows_mark_steps_behind_a_failure_as_blocked():
    spec = make_spec()
    steps = pipeline_steps(_plan(spec))
    first = steps[0]
    rows = stage_rows(steps, {first.key: StepState("Failed", "boom", attempts=2)})
    assert (rows[0].state, rows[0].message, rows[0].attempts) == ("Failed", "boom", 2)
    dependants = [i for i, s in enumerate(steps) if first.key in s.after]
    assert dependants and all(rows[i].message == "blocked by a failed step" for i in dependants)
    assert all(rows[i].state == "Pending" for i in dependants)


def test_cost_counts_one_deployment_for_every_task():
    spec = make_spec(serving={"replicas": 2})
    cost = cost_status(spec, gpus_per_replica=1)
    assert (cost.serving_deployments, cost.serving_gpus, cost.single_task_deployments) == (1, 2, 3)
    assert cost.saving_percent == 66.7
    assert cost_status(make_spec(serving={"replicas": 0}), 1).serving_deployments == 0
