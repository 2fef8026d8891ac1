"""Task filtering, the high/low split, stage omission, hashes."""

from __future__ import annotations

import pytest

from mtd_operator.api.spec import MultiTaskDeploymentSpec
from mtd_operator.core.planner import plan
from mtd_operator.core.profile import FileProfile, TaskProfile

from .specs import task


def spec_of(tasks, **spec) -> MultiTaskDeploymentSpec:
    return MultiTaskDeploymentSpec.model_validate(
        {"baseModel": {"uri": "/models/base"}, "tasks": tasks, **spec}
    )


def profiles_of(counts: dict[str, int], data_version: str = "v1") -> dict[str, TaskProfile]:
    return {
        name: TaskProfile(
            train=FileProfile(path=f"{name}.jsonl", sha256=f"{name}-{data_version}", examples=n),
            eval=FileProfile(path=f"{name}-eval.jsonl", sha256=f"{name}-eval", examples=5),
        )
        for name, n in counts.items()
    }


MIXED = [
    task("summary", "generation"),
    task("spam", labels=["ham", "spam"]),
    task("sentiment", labels=["negative", "neutral", "positive"], ordinal=True),
    task("topic", labels=["sport", "tech", "politics"]),
    task("title", "generation"),
    task("polarity", labels=["neg", "pos"]),
]
MIXED_COUNTS = {t["name"]: 100 for t in MIXED}


def groups(spec: MultiTaskDeploymentSpec, counts=None) -> dict[str, list[str]]:
    result = plan(spec, profiles_of(counts or {t.name: 100 for t in spec.tasks}))
    return {g.name: list(g.tasks) for g in result.groups}


def test_filtering_none_puts_everything_in_one_group():
    assert groups(spec_of(MIXED, filtering={"strategy": "none"})) == {
        "all": [t["name"] for t in MIXED]
    }


def test_filtering_by_task_type():
    assert groups(spec_of(MIXED, filtering={"strategy": "taskType"})) == {
        "generation": ["summary", "title"],
        "classification": ["spam", "sentiment", "topic", "polarity"],
    }


def test_filtering_by_taxonomy():
    # An ordinal task with two labels is binary: the order adds nothing to a yes/no choice.
    assert groups(spec_of(MIXED, filtering={"strategy": "taxonomy"})) == {
        "generation": ["summary", "title"],
        "binary": ["spam", "polarity"],
        "ordinal": ["sentiment"],
        "multiclass": ["topic"],
    }


def test_taxonomy_is_the_default_and_empty_groups_do_not_exist():
    spec = spec_of([task("a", "generation"), task("b", "generation")])
    assert groups(spec) == {"generation": ["a", "b"]}


def test_isolated_tasks_train_alone():
    spec = spec_of(MIXED, filtering={"strategy": "taskType", "isolate": ["topic"]})
    assert groups(spec) == {
        "generation": ["summary", "title"],
        "classification": ["spam", "sentiment", "polarity"],
        "solo-topic": ["topic"],
    }


def test_high_low_split_by_threshold_and_overrides():
    spec = spec_of(
        [
            task("big", resource="auto"),
            task("edge", resource="auto"),
            task("small", resource="auto"),
            task("forced-high", resource="high"),
            task("forced-low", resource="low"),
        ],
        training={"highResourceMinExamples": 1000},
    )
    counts = {"big": 5000, "edge": 1000, "small": 999, "forced-high": 10, "forced-low": 50_000}
    result = plan(spec, profiles_of(counts))
    (group,) = result.groups
    assert group.high_resource == ("big", "edge", "forced-high")
    stage1, stage2 = group.stages
    assert stage1.name == "stage1" and stage1.tasks == ("big", "edge", "forced-high")
    assert stage1.sampling.strategy == "instance"
    assert stage1.sampling.rates == pytest.approx(
        {"big": 5000 / 6010, "edge": 1000 / 6010, "forced-high": 10 / 6010}
    )
    assert stage2.tasks == tuple(counts)
    assert stage2.starts_from == stage1.hash


def test_stage1_is_omitted_when_a_group_has_no_high_resource_task():
    spec = spec_of([task("a"), task("b")], training={"highResourceMinExamples": 1000})
    (group,) = plan(spec, profiles_of({"a": 10, "b": 20})).groups
    assert [s.name for s in group.stages] == ["stage2"]
    assert group.stages[0].starts_from is None


def test_stage2_rates_use_temperature_and_cap():
    spec = spec_of(
        [task("a"), task("b")],
        training={
            "stage2": {"temperature": 2.0, "datasetCap": 400},
            "highResourceMinExamples": 10**6,
        },
    )
    (group,) = plan(spec, profiles_of({"a": 10_000, "b": 100})).groups
    # min(10000, 400)^0.5 = 20, 100^0.5 = 10
    assert group.stages[-1].sampling.rates == pytest.approx({"a": 2 / 3, "b": 1 / 3})
    assert group.stages[-1].sampling.to_json()["datasetCap"] == 400


def test_plan_json_contract():
    spec = spec_of(MIXED, training={"highResourceMinExamples": 50})
    doc = plan(spec, profiles_of(MIXED_COUNTS)).to_json()
    assert set(doc) >= {"groups"}
    for group in doc["groups"]:
        assert set(group) >= {"name", "tasks", "stages"}
        for stage in group["stages"]:
            assert stage["name"] in {"stage1", "stage2"}
            assert set(stage) >= {"name", "tasks", "hash", "sampling"}
            sampling = stage["sampling"]
            assert sampling["strategy"] in {"instance", "temperature"}
            assert set(sampling["rates"]) == set(stage["tasks"])
            assert sum(sampling["rates"].values()) == pytest.approx(1.0)
            if sampling["strategy"] == "temperature":
                assert {"temperature", "datasetCap"} <= set(sampling)


def test_hashes_are_stable_across_runs_and_task_order_of_other_groups():
    spec = spec_of(MIXED)
    first = plan(spec, profiles_of(MIXED_COUNTS))
    again = plan(spec_of(MIXED), profiles_of(MIXED_COUNTS))
    assert first.to_json() == again.to_json()
    # Moving a generation task around in the list leaves the classification groups alone.
    reordered = spec_of([MIXED[1], MIXED[2], MIXED[3], MIXED[0], MIXED[5], MIXED[4]])
    other = plan(reordered, profiles_of(MIXED_COUNTS))
    by_name = {g.name: g for g in other.groups}
    for group in first.groups:
        if group.name != "generation":
            assert by_name[group.name].stages == group.stages


def stage_hashes(result) -> dict[tuple[str, str], str]:
    return {(s.group, s.name): s.hash for s in result.stages()}


def test_adding_a_low_resource_task_reruns_only_its_group_from_stage2():
    base = [task("big", labels=["a", "b"]), task("gen", "generation")]
    counts = {"big": 5000, "gen": 100, "new": 50}
    training = {"highResourceMinExamples": 1000}
    before = stage_hashes(plan(spec_of(base, training=training), profiles_of(counts)))
    after = stage_hashes(
        plan(
            spec_of([*base, task("new", labels=["c", "d"])], training=training), profiles_of(counts)
        )
    )
    assert after[("binary", "stage1")] == before[("binary", "stage1")]
    assert after[("binary", "stage2")] != before[("binary", "stage2")]
    assert after[("generation", "stage2")] == before[("generation", "stage2")]


def test_adding_a_high_resource_task_reruns_from_stage1():
    training = {"highResourceMinExamples": 1000}
    counts = {"big": 5000, "big2": 3000}
    before = stage_hashes(plan(spec_of([task("big")], training=training), profiles_of(counts)))
    after = stage_hashes(
        plan(spec_of([task("big"), task("big2")], training=training), profiles_of(counts))
    )
    assert after[("binary", "stage1")] != before[("binary", "stage1")]


def test_changed_data_changes_the_hash_and_propagates_to_stage2():
    training = {"highResourceMinExamples": 1000}
    spec = spec_of([task("big"), task("small")], training=training)
    counts = {"big": 5000, "small": 10}
    old = plan(spec, profiles_of(counts, "v1"))
    new_profiles = profiles_of(counts, "v1")
    new_profiles["big"] = profiles_of(counts, "v2")["big"]
    new = plan(spec, new_profiles)
    assert stage_hashes(old)[("binary", "stage1")] != stage_hashes(new)[("binary", "stage1")]
    assert stage_hashes(old)[("binary", "stage2")] != stage_hashes(new)[("binary", "stage2")]


@pytest.mark.parametrize(
    "change",
    [
        {"baseModel": {"uri": "/models/other"}},
        {"training": {"lora": {"rank": 8}}},
        {"training": {"learningRate": 0.001}},
        {"training": {"stage2": {"temperature": 3.33}}},
        {"training": {"stage2": {"maxSteps": 7}}},
    ],
)
def test_training_inputs_change_the_hash(change):
    tasks = [task("a")]
    base = plan(spec_of(tasks), profiles_of({"a": 10}))
    changed_spec = {"baseModel": {"uri": "/models/base"}, "tasks": tasks, **change}
    changed = plan(MultiTaskDeploymentSpec.model_validate(changed_spec), profiles_of({"a": 10}))
    assert base.groups[0].stages[-1].hash != changed.groups[0].stages[-1].hash


@pytest.mark.parametrize(
    "change",
    [
        {"serving": {"replicas": 3}},
        {"qualification": {"threshold": 0.95}},
    ],
)
def test_serving_and_qualification_never_change_training_hashes(change):
    tasks = [task("a")]
    base = plan(spec_of(tasks), profiles_of({"a": 10}))
    changed = plan(spec_of(tasks, **change), profiles_of({"a": 10}))
    assert stage_hashes(base) == stage_hashes(changed)
    assert base.hash == changed.hash


def test_metric_change_reruns_evaluation_only():
    base = plan(spec_of([task("a")]), profiles_of({"a": 10}))
    changed = plan(spec_of([task("a", metric="macroF1")]), profiles_of({"a": 10}))
    assert stage_hashes(base) == stage_hashes(changed)
    assert base.groups[0].evaluation_hash != changed.groups[0].evaluation_hash


def test_baselines_are_planned_per_task_and_independent_of_other_tasks():
    tasks = [task("a", baseline={"train": True}), task("b", baseline={"score": 0.8})]
    first = plan(spec_of(tasks), profiles_of({"a": 10, "b": 10, "c": 10}))
    assert [b.task for b in first.baselines] == ["a"]
    more = plan(spec_of([*tasks, task("c")]), profiles_of({"a": 10, "b": 10, "c": 10}))
    assert more.baselines == first.baselines


def test_missing_profile_is_an_error():
    with pytest.raises(ValueError, match="no data profile"):
        plan(spec_of([task("a")]), {})
