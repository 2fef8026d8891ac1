"""Property tests over the spec: random and mutated resources through the models, the CRD
schema (jsonschema, as the API server checks it) and the planner never raise anything but
a validation error whose problems carry a field path. Deterministic (derandomize) for CI.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k8s_emulator.schema import to_jsonschema
from mtd_operator.api.crd import build_crd
from mtd_operator.core.planner import plan
from mtd_operator.core.problems import InvalidSpec
from mtd_operator.core.profile import CompositionProfile, FileProfile, TaskProfile
from mtd_operator.specfile import parse_resource

FUZZ = settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
# The CRD's OpenAPI v3 schema as the API emulator checks it (boolean exclusive bounds,
# nullable, ...: see tools/k8s_emulator/k8s_emulator/schema.py); metadata is the
# server's own business.
_PLAIN = to_jsonschema(build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
SCHEMA = jsonschema.Draft7Validator(
    {**_PLAIN, "properties": {k: v for k, v in _PLAIN["properties"].items() if k != "metadata"}}
)
SEEN = {"models": 0, "accepted": 0, "planned": 0}


def _task(name: str, kind: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "type": kind,
        "instruction": f"Do {name}.",
        "data": {"train": f"data/{name}.jsonl", "eval": f"data/{name}.eval.jsonl"},
    }
    if kind == "classification":
        body["labels"] = ["no", "yes"]
    return {**body, **extra}


VALID = {
    "apiVersion": "multitask.dev/v1alpha1",
    "kind": "MultiTaskDeployment",
    "metadata": {"name": "support", "namespace": "default"},
    "spec": {
        "baseModel": {"uri": "models/tiny"},
        "tasks": [
            _task("intent", "classification", baseline={"score": 0.8}),
            _task(
                "sentiment",
                "classification",
                labels=["low", "mid", "high"],
                ordinal=True,
                baseline={"train": True},
            ),
            _task("summary", "generation", metric="rougeL", resource="high"),
        ],
        "filtering": {"strategy": "taskType", "isolate": []},
        "training": {
            "highResourceMinExamples": 100,
            "stage1": {"maxSteps": 10},
            "stage2": {"maxSteps": 10, "temperature": 2.0, "datasetCap": 1000},
            "lora": {"rank": 8, "alpha": 16},
            "batchSize": 4,
        },
        "qualification": {"threshold": 0.95},
        "serving": {"engine": "tgi", "replicas": 1},
        "compositions": [
            {
                "name": "intent-summary",
                "tasks": ["intent", "summary"],
                "weights": [0.5, 1.0],
                "merge": "ties",
                "density": 0.4,
                "instruction": "Name the intent, then summarise.",
                "data": {"eval": "data/is.eval.jsonl"},
                "calibration": {"data": "data/is.jsonl", "rank": 2, "maxSteps": 5},
                "baseline": {"score": 0.3},
            }
        ],
    },
}

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "-", "a" * 70, "UPPER", "x_y", "0", "high", "lora", "vllm", "hf://x"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=12), children, max_size=4),
    ),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths[1:] if len(paths) > 1 else paths))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        if not path:
            break
        key = path[-1]
        action = draw(st.sampled_from(["replace", "delete", "add", "duplicate"]))
        if action == "replace":
            parent[key] = draw(json_values)
        elif action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent[key], dict):
            parent[key][draw(st.text(max_size=10))] = draw(json_values)
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
    return doc


def _profiles(spec: Any, examples: int) -> dict[str, TaskProfile]:
    def file(name: str, n: int) -> FileProfile:
        return FileProfile(path=f"data/{name}.jsonl", sha256=f"{n:064x}", examples=n)

    return {
        t.name: TaskProfile(train=file(t.name, examples + i), eval=file(t.name + "-e", 5))
        for i, t in enumerate(spec.tasks)
    }


def _composition_profiles(spec: Any) -> dict[str, CompositionProfile]:
    file = FileProfile(path="data/c.jsonl", sha256="c" * 64, examples=8)
    return {c.name: CompositionProfile(eval=file, calibration=file) for c in spec.compositions}


def check(doc: Any, examples: int = 150) -> None:
    """The properties, for one document."""
    SEEN["models"] += 1
    # 1. the CRD schema: jsonschema decides (valid or ValidationError), never crashes.
    schema_ok = SCHEMA.is_valid(_jsonable(doc))
    # 2. the models: the resource, or InvalidSpec whose problems each say where.
    try:
        resource = parse_resource(doc)
    except InvalidSpec as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.message
            assert problem.path or not isinstance(doc, dict), (problem, doc)
        return
    SEEN["accepted"] += 1
    # What the models accept, the API server's schema accepts (or kubectl apply would
    # refuse a resource `mtd validate` calls fine).
    assert schema_ok, doc
    # 3. the planner: every accepted spec plans.
    the_plan = plan(
        resource.spec, _profiles(resource.spec, examples), _composition_profiles(resource.spec)
    )
    assert the_plan.groups
    SEEN["planned"] += 1


def _jsonable(doc: Any) -> Any:
    """As the API server sees it: NaN/inf are not JSON (mapped to strings here), and a
    null in a field whose schema is not `nullable` is pruned before validation."""
    if isinstance(doc, float) and not math.isfinite(doc):
        return str(doc)
    if isinstance(doc, dict):
        return {k: _jsonable(v) for k, v in doc.items() if v is not None}
    if isinstance(doc, list):
        return [_jsonable(v) for v in doc]
    return doc


def test_the_valid_resource_is_valid() -> None:
    check(VALID)
    parse_resource(VALID)


@FUZZ
@given(doc=mutated(), examples=st.integers(1, 10_000))
def test_mutated_resources(doc: Any, examples: int) -> None:
    check(doc, examples)


@FUZZ
@given(doc=json_values)
def test_random_documents(doc: Any) -> None:
    check(doc)


@FUZZ
@given(spec=json_values)
def test_random_specs_in_a_valid_envelope(spec: Any) -> None:
    check({**VALID, "spec": spec})


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(
    tasks=st.lists(
        st.builds(
            _task,
            name=st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True),
            kind=st.sampled_from(["classification", "generation"]),
        ),
        min_size=1,
        max_size=8,
    ),
    examples=st.integers(1, 5000),
    strategy=st.sampled_from(["none", "taskType", "taxonomy"]),
)
def test_generated_task_lists_plan_or_say_why(tasks, examples, strategy) -> None:
    doc = copy.deepcopy(VALID)
    doc["spec"]["tasks"] = tasks
    doc["spec"]["filtering"] = {"strategy": strategy}
    del doc["spec"]["compositions"]  # they name VALID's tasks
    check(doc, examples)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print(f"\nspec fuzz: {SEEN['models']} documents, {SEEN['accepted']} accepted, "
          f"{SEEN['planned']} planned")  # fmt: skip
