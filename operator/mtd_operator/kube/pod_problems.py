"""Why a Job that has not failed is not running either: what the kubelet, the scheduler
or the Job controller said about its pods.

A Job stays active, with no condition, while its pods cannot start: the Job controller
cannot create them (`FailedCreate` Events: a missing ServiceAccount, a Pod Security
rejection, an invalid hostname; `pkg/controller/job/job_controller.go`), the scheduler
cannot place them (`PodScheduled=False`, reason `Unschedulable`), or the kubelet cannot
start their containers (a waiting reason: `ErrImagePull`/`ImagePullBackOff` from
`pkg/kubelet/images`, `CreateContainerConfigError` for a missing Secret or key from
`pkg/kubelet/kuberuntime`). None of these ends the Job, so without reading them a
resource would say "Running" forever. Each function here returns the first such reason
as `pod NAME: REASON: message`, or "" when the pods are fine.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Waiting reasons that do not clear by themselves while nothing changes (transient
# ones, ContainerCreating and PodInitializing, are the normal way to start).
STUCK_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "CrashLoopBackOff",  # a native sidecar (the evaluation's engine) that keeps exiting
    }
)
JOB_NAME_LABEL = "job-name"


def _statuses(pod: Any) -> Iterable[Any]:
    status = pod.status
    if status is None:
        return []
    return [*(status.init_container_statuses or []), *(status.container_statuses or [])]


def pod_problem(pod: Any) -> str:
    """`pod NAME: REASON: message` for a pod that cannot start, else ""."""
    status = pod.status
    if status is None or status.phase in ("Succeeded", "Failed"):
        return ""
    name = pod.metadata.name
    for cs in _statuses(pod):
        waiting = cs.state.waiting if cs.state else None
        if waiting is not None and waiting.reason in STUCK_WAITING:
            detail = f": {waiting.message}" if waiting.message else ""
            return f"pod {name}: {waiting.reason}{detail}"
    for condition in status.conditions or []:
        if (
            condition.type == "PodScheduled"
            and condition.status == "False"
            and condition.reason == "Unschedulable"
        ):
            detail = f": {condition.message}" if condition.message else ""
            return f"pod {name}: Unschedulable{detail}"
    return ""


def expected_pods(job: Any) -> int:
    """Pods a running Job should have at once: its parallelism (1 unless Indexed)."""
    spec = job.spec
    return max(1, (spec.parallelism or 1) if spec is not None else 1)


def job_problem(job: Any, pods: list[Any], events: list[Any]) -> str:
    """Why an unfinished Job's pods are not running: a stuck pod's reason, or, while the
    Job has fewer live pods than it should, the newest `FailedCreate` Event about it."""
    name = job.metadata.name
    own = [p for p in pods if (p.metadata.labels or {}).get(JOB_NAME_LABEL) == name]
    for pod in sorted(own, key=lambda p: p.metadata.name):
        problem = pod_problem(pod)
        if problem:
            return problem
    live = [p for p in own if p.status is None or p.status.phase in (None, "Pending", "Running")]
    if len(live) >= expected_pods(job):
        return ""
    uid = job.metadata.uid
    refused = [
        e
        for e in events
        if e.reason == "FailedCreate"
        and e.involved_object is not None
        and e.involved_object.name == name
        and (uid is None or e.involved_object.uid in (None, uid))
    ]
    if not refused:
        return ""
    newest = max(refused, key=_event_time)
    return f"job {name}: FailedCreate: {newest.message or ''}".rstrip(": ")


def _event_time(event: Any) -> str:
    """Events' times as RFC 3339 text (the client may give datetimes): ordering only."""
    for value in (event.last_timestamp, event.event_time, event.first_timestamp):
        if value is not None:
            return value.isoformat() if hasattr(value, "isoformat") else str(value)
    return ""
