"""The Controller's decisions, one pass at a time, against fake clients (fake_clients.py):
what each situation makes it write, and that a second pass over the same state writes
nothing. The same Controller runs against the emulator in tests/operator."""

from __future__ import annotations

import pytest

from mtd_contract.results import ProfileResult
from mtd_operator.api.spec import API_GROUP, API_VERSION, KIND, PLURAL
from mtd_operator.core.observation import ServingObservation
from mtd_operator.kube import builders
from mtd_operator.kube.controller import Children, Controller
from mtd_operator.labels import ANNOTATION_STEP
from mtd_operator.result_parts import encode
from tests.core.test_planner import profiles_of
from tests.kube.fake_clients import FakeClients, by_role, failed_pod, job_finished
from tests.kube.test_builders import CONFIG, make_spec
from tests.kube.test_verified_serving import decide

NS, NAME = "ml", "support"


def resource(spec: dict) -> dict:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": NAME, "namespace": NS, "uid": "uid-1", "generation": 1},
        "spec": spec,
    }


@pytest.fixture
def fake() -> FakeClients:
    return FakeClients()


def conditions(fake: FakeClients) -> dict[str, dict]:
    status = fake.store.get(PLURAL, NS, NAME).get("status") or {}
    return {c["type"]: c for c in status.get("conditions", [])}


def test_an_invalid_spec_is_reported_by_field_and_starts_nothing(fake):
    fake.store.put(PLURAL, NS, resource({"baseModel": {"uri": "pvc://m/base"}, "tasks": []}))
    Controller(CONFIG, fake).reconcile(NS, NAME)
    ready = conditions(fake)["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "spec.tasks" in ready["message"]
    assert fake.store.of("Job") == [] and fake.store.of("ConfigMap") == []
    events = fake.store.of("Event")
    assert [e["type"] for e in events] == ["Warning"] * len(events) and events


def test_profiling_starts_once_and_a_second_pass_writes_nothing(fake):
    spec = make_spec().to_api()
    fake.store.put(PLURAL, NS, resource(spec))
    controller = Controller(CONFIG, fake)
    first = controller.reconcile(NS, NAME)
    assert (
        by_role(fake.store.of("Job"))["profile"] and by_role(fake.store.of("ConfigMap"))["profile"]
    )
    assert sorted(first.created) == sorted(fake.store.created()[: len(first.created)])
    writes = len(fake.store.writes)
    second = controller.reconcile(NS, NAME)
    assert second.created == [] and len(fake.store.writes) == writes  # level-based, no-op
    assert conditions(fake)["Ready"]["reason"] == "Profiling"


def test_a_failed_profile_blocks_with_the_pods_own_words(fake):
    fake.store.put(PLURAL, NS, resource(make_spec().to_api()))
    controller = Controller(CONFIG, fake)
    controller.reconcile(NS, NAME)
    (job,) = by_role(fake.store.of("Job"))["profile"]
    job_finished(fake.store, NS, job, "Failed", reason="PodFailurePolicy")
    failed_pod(fake.store, NS, job, "data/a-train.jsonl line 3: 'label' missing")
    controller.reconcile(NS, NAME)
    ready = conditions(fake)["Ready"]
    assert ready["reason"] == "InvalidData" and "line 3: 'label' missing" in ready["message"]
    assert by_role(fake.store.of("Job"))["profile"] == [job]  # not started again


def publish_profiles(fake: FakeClients, counts: dict[str, int]) -> None:
    """What `mtd profile` leaves: its result ConfigMap(s), named after its Job."""
    (job,) = by_role(fake.store.of("Job"))["profile"]
    profiles = {name: profile.to_json() for name, profile in profiles_of(counts).items()}
    payload = ProfileResult(profiles=profiles).model_dump(mode="json")
    for part in encode(builders.result_name(job), payload):
        fake.store.put("ConfigMap", NS, {
            "metadata": {"name": part.name, "labels": builders.owner_label(NAME)},
            "data": part.data, "binaryData": part.binary_data,
        })  # fmt: skip


def profiled(fake: FakeClients) -> Controller:
    fake.store.put(PLURAL, NS, resource(make_spec().to_api()))
    controller = Controller(CONFIG, fake)
    controller.reconcile(NS, NAME)
    publish_profiles(fake, {"a": 40, "g": 40})
    return controller


def test_published_profiles_start_the_first_steps_once(fake):
    controller = profiled(fake)
    controller.reconcile(NS, NAME)
    steps = [
        j
        for j in fake.store.of("Job")
        if ANNOTATION_STEP in (j["metadata"].get("annotations") or {})
    ]
    assert steps, fake.store.created()
    for job in steps:  # each with the config it reads
        fake.store.get("ConfigMap", NS, job["metadata"]["name"])
    assert conditions(fake)["Ready"]["status"] == "False"
    stages = fake.store.get(PLURAL, NS, NAME)["status"]["stages"]
    assert {s["state"] for s in stages} == {"Pending"}  # started, not yet seen running
    assert controller.reconcile(NS, NAME).created == []  # the next pass starts nothing
    stages = fake.store.get(PLURAL, NS, NAME)["status"]["stages"]
    started = {j["metadata"]["annotations"][ANNOTATION_STEP] for j in steps}
    assert {s["state"] for s in stages if s["hash"] in str(started)} == {"Running"}
    writes = len(fake.store.writes)
    controller.reconcile(NS, NAME)
    assert fake.store.writes[writes:] == []  # nothing changed: nothing written


def test_a_finished_step_whose_result_is_gone_runs_again(fake):
    controller = profiled(fake)
    controller.reconcile(NS, NAME)
    job = next(
        j["metadata"]["name"] for j in fake.store.of("Job")
        if ANNOTATION_STEP in (j["metadata"].get("annotations") or {})
    )  # fmt: skip
    job_finished(fake.store, NS, job, "Complete")  # but no result ConfigMap
    before = len(fake.store.writes)
    controller.reconcile(NS, NAME)
    assert fake.store.writes[before:][:2] == [("delete", "Job", job), ("create", "Job", job)]
    assert fake.store.get("Job", NS, job)["status"] == {}  # a new Job, not yet run


def test_a_status_write_that_lost_a_race_is_redone_on_the_fresh_object(fake, monkeypatch):
    fake.store.put(PLURAL, NS, resource(make_spec().to_api()))
    real = fake.custom.patch_namespaced_custom_object_status
    raced = []

    def racing(*args, **kwargs):
        if not raced:  # another writer changes the resource between our read and write
            raced.append(True)
            fake.store.patch(PLURAL, NS, NAME, {"metadata": {"labels": {"touched": "yes"}}})
        return real(*args, **kwargs)

    monkeypatch.setattr(fake.custom, "patch_namespaced_custom_object_status", racing)
    result = Controller(CONFIG, fake).reconcile(NS, NAME)
    assert raced and result is not None
    assert conditions(fake)["Ready"]["reason"] == "Profiling"
    assert len(by_role(fake.store.of("Job"))["profile"]) == 1  # the retry created no twin


# -- loading adapters into running vLLM pods only once they are verified (issue #29) ---


class Loads:
    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, dict]] = []
        monkeypatch.setattr(
            "mtd_operator.engines.runtime_lora.load_into",
            lambda url, adapters, key=None: self.calls.append((url, dict(adapters))) or [],
        )


def serving_pod(fake: FakeClients) -> None:
    labels = builders._selector(NAME, "serving")
    fake.store.put("Pod", NS, {
        "metadata": {"name": "support-serving-1", "labels": labels},
        "spec": {"containers": [{"name": "server", "ports": [
            {"name": "http", "containerPort": 8000}]}]},
        "status": {"phase": "Running", "podIP": "10.0.0.7",
                   "conditions": [{"type": "Ready", "status": "True"}]},
    })  # fmt: skip


def one_pass(controller: Controller, fake: FakeClients, spec, decision):
    """The runtime-load part of a pass: verify the revision, then load if allowed."""
    body = resource(spec.to_api())
    where = builders.cluster_locations(spec, CONFIG, NS, NAME)
    serving = builders.ServingInputs(body, spec, CONFIG, decision.serving, where)
    refused = controller._verify_revision(serving, controller._children(NS, NAME), [])
    rollout = ServingObservation(revision=None, ready=True, ready_replicas=1)
    return controller._runtime_load(serving, rollout, refused)


@pytest.fixture
def vllm(fake, monkeypatch):
    """A vLLM resource whose steps are done, one ready serving pod, and the loads made."""
    spec = make_spec(serving={"engine": "vllm", "replicas": 1})
    serving_pod(fake)
    return Loads(monkeypatch), spec, decide(spec), Controller(CONFIG, fake)


def test_adapters_are_loaded_only_after_their_revision_is_verified(fake, vllm):
    loads, spec, decision, controller = vllm

    seen = one_pass(controller, fake, spec, decision)
    (job,) = by_role(fake.store.of("Job"))["verify"]
    assert job == builders.verify_job_name(NAME, decision.serving.revision)
    assert not seen.ready and "verifying the adapters" in seen.message
    assert loads.calls == []
    command = fake.store.get("Job", NS, job)["spec"]["template"]["spec"]["containers"][0]
    assert command["command"][:2] == ["mtd", "verify"]

    seen = one_pass(controller, fake, spec, decision)  # still running: nothing more
    assert loads.calls == [] and by_role(fake.store.of("Job"))["verify"] == [job]

    job_finished(fake.store, NS, job, "Complete")
    seen = one_pass(controller, fake, spec, decision)
    assert seen.ready and seen.revision == decision.serving.revision
    ((url, adapters),) = loads.calls
    where = builders.cluster_locations(spec, CONFIG, NS, NAME)
    assert url == "http://10.0.0.7:8000"
    assert adapters == builders.engine_adapters(spec, decision.serving, where)


def test_a_revision_that_fails_verification_is_never_loaded(fake, vllm):
    loads, spec, decision, controller = vllm
    one_pass(controller, fake, spec, decision)
    (job,) = by_role(fake.store.of("Job"))["verify"]
    job_finished(fake.store, NS, job, "Failed", reason="PodFailurePolicy")
    failed_pod(fake.store, NS, job, "refusing to serve 1 of 2 folders: adapter_model differs")
    for _ in range(2):
        seen = one_pass(controller, fake, spec, decision)
        assert not seen.ready and seen.revision is None
        assert "failed verification" in seen.message and "adapter_model differs" in seen.message
    assert loads.calls == []
    assert by_role(fake.store.of("Job"))["verify"] == [job]  # not retried: it would differ again


def test_a_new_revision_replaces_the_old_verification(fake, monkeypatch):
    Loads(monkeypatch)
    spec = make_spec(serving={"engine": "vllm", "replicas": 1})
    controller = Controller(CONFIG, fake)
    old, new = decide(spec), decide(spec, "cd" * 32)
    one_pass(controller, fake, spec, old)
    one_pass(controller, fake, spec, new)
    assert by_role(fake.store.of("Job"))["verify"] == [
        builders.verify_job_name(NAME, new.serving.revision)
    ]


def test_nothing_is_verified_by_a_job_where_pods_verify_at_start(fake):
    """TGI rolls out a new template per adapter set: its init container checks it."""
    spec = make_spec(serving={"engine": "tgi", "replicas": 1})
    decision = decide(spec)
    where = builders.cluster_locations(spec, CONFIG, NS, NAME)
    serving = builders.ServingInputs(resource(spec.to_api()), spec, CONFIG, decision.serving, where)
    assert builders.verify_job(serving) is None
    children = Children({}, {}, [], [])
    controller = Controller(CONFIG, fake)
    assert controller._verify_revision(serving, children, []) is None
    assert fake.store.of("Job") == []
