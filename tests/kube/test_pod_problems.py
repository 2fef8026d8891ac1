"""A Job that neither runs nor fails says why, in a condition (kube/pod_problems.py).

The objects are the kubernetes client's models, shaped as the kubelet, the scheduler and
the Job controller write them (sources cited in kube/pod_problems.py)."""

from __future__ import annotations

import datetime as dt

from kubernetes.client import (
    CoreV1Event,
    V1ContainerState,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1Job,
    V1JobSpec,
    V1JobStatus,
    V1ObjectMeta,
    V1ObjectReference,
    V1Pod,
    V1PodCondition,
    V1PodStatus,
    V1PodTemplateSpec,
)

from mtd_operator.core.conditions import Blocked, progress
from mtd_operator.core.observation import StepState
from mtd_operator.core.steps import Step
from mtd_operator.kube.controller import _job_state
from mtd_operator.kube.pod_problems import job_problem, pod_problem

JOB = "q-train-stage1-abc"


def job(parallelism: int = 1, uid: str = "job-uid") -> V1Job:
    return V1Job(
        metadata=V1ObjectMeta(name=JOB, uid=uid, annotations={}),
        spec=V1JobSpec(parallelism=parallelism, template=V1PodTemplateSpec()),
        status=V1JobStatus(active=parallelism),
    )


def pod(name: str = f"{JOB}-x1", waiting: str | None = None, message: str = "", **status) -> V1Pod:
    statuses = None
    if waiting is not None:
        state = V1ContainerState(waiting=V1ContainerStateWaiting(reason=waiting, message=message))
        statuses = [
            V1ContainerStatus(
                name="trainer", image="i", image_id="", ready=False, restart_count=0, state=state
            )
        ]
    return V1Pod(
        metadata=V1ObjectMeta(name=name, labels={"job-name": JOB}),
        status=V1PodStatus(phase="Pending", container_statuses=statuses, **status),
    )


def failed_create(message: str, uid: str = "job-uid", minutes: int = 0) -> CoreV1Event:
    at = dt.datetime(2026, 12, 7, 8, minutes, tzinfo=dt.UTC)
    return CoreV1Event(
        metadata=V1ObjectMeta(name=f"{JOB}.{minutes}"),
        involved_object=V1ObjectReference(kind="Job", name=JOB, uid=uid),
        reason="FailedCreate",
        message=message,
        last_timestamp=at,
    )


def test_an_image_that_cannot_be_pulled_names_the_pod_and_the_reason():
    stuck = pod(waiting="ImagePullBackOff", message='Back-off pulling image "trainer:9"')
    assert pod_problem(stuck) == (
        f'pod {JOB}-x1: ImagePullBackOff: Back-off pulling image "trainer:9"'
    )
    state = _job_state(job(), [stuck], {})
    assert state is not None and state.phase == "Running"
    assert "ImagePullBackOff" in state.message and f"{JOB}-x1" in state.message


def test_a_missing_secret_and_an_unschedulable_pod_are_reported():
    secret = pod(waiting="CreateContainerConfigError", message='secret "hf-token" not found')
    assert pod_problem(secret).endswith('CreateContainerConfigError: secret "hf-token" not found')
    unschedulable = pod(
        conditions=[
            V1PodCondition(
                type="PodScheduled",
                status="False",
                reason="Unschedulable",
                message="0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
            )
        ]
    )
    assert pod_problem(unschedulable) == (
        f"pod {JOB}-x1: Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    )


def test_starting_pods_are_not_a_problem():
    assert pod_problem(pod(waiting="ContainerCreating")) == ""
    assert pod_problem(pod()) == ""
    assert job_problem(job(), [pod()], [failed_create("old refusal")]) == ""


def test_a_job_without_pods_reports_the_newest_failed_create_of_its_own():
    refusals = [
        failed_create('pods "x" is forbidden: error looking up service account', minutes=1),
        failed_create(
            'pods "x" is forbidden: error looking up service account ns/trainer: '
            'serviceaccount "trainer" not found',
            minutes=2,
        ),
        failed_create("about another Job of the same name", uid="earlier-job", minutes=3),
    ]
    assert job_problem(job(), [], refusals) == (
        f'job {JOB}: FailedCreate: pods "x" is forbidden: error looking up service account '
        'ns/trainer: serviceaccount "trainer" not found'
    )
    assert job_problem(job(), [], []) == ""


def test_a_multi_node_job_missing_one_pod_reports_why():
    hostname = failed_create('Pod "x" is invalid: spec.hostname: Invalid value')
    assert "spec.hostname" in job_problem(job(parallelism=2), [pod()], [hostname])


def test_stuck_steps_make_the_condition_false_with_their_reason():
    step = Step(key="train-stage1", role="stage", verb="train", hash="h", after=(), output="o")
    states = {"train-stage1": StepState("Running", message="pod p: ImagePullBackOff: x")}
    check = progress("Trained", [step], states)
    assert (check.status, check.reason) == (False, "PodNotRunning")
    assert check.message == "train-stage1: pod p: ImagePullBackOff: x"
    assert progress("Trained", [step], {"train-stage1": StepState("Running")}).reason == "Training"


def test_a_profiling_pod_that_cannot_start_blocks_with_its_reason():
    checks = Blocked.profiling("pod p: ImagePullBackOff: x").checks()
    ready = next(c for c in checks if c.type == "Ready")
    assert (ready.status, ready.reason) == (False, "PodNotRunning")
    assert "pod p: ImagePullBackOff" in ready.message
