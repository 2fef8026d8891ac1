"""The failed step's message names the pod that failed: the newest attempt's, and in a
multi-node step the rank that ended first (the others fail because of it)."""

from __future__ import annotations

import datetime as dt

from kubernetes.client import (
    V1ContainerState,
    V1ContainerStateTerminated,
    V1ContainerStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodStatus,
)

from mtd_operator.kube.controller import INDEX_LABEL, _last_termination

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def pod(name: str, created: int, finished: int, reason: str, code: int, index: str | None = None,
        message: str = "") -> V1Pod:  # fmt: skip
    term = V1ContainerStateTerminated(
        exit_code=code, reason=reason, message=message,
        finished_at=T0 + dt.timedelta(seconds=finished),
    )  # fmt: skip
    status = V1ContainerStatus(
        name="trainer", image="t", image_id="", ready=False, restart_count=0,
        state=V1ContainerState(terminated=term),
    )  # fmt: skip
    labels = {INDEX_LABEL: index} if index is not None else {}
    meta = V1ObjectMeta(
        name=name, labels=labels, creation_timestamp=T0 + dt.timedelta(seconds=created)
    )
    return V1Pod(metadata=meta, status=V1PodStatus(container_statuses=[status]))


def test_one_pod_jobs_report_the_newest_attempt():
    pods = [
        pod("j-a", 0, 5, "Error", 1, message="old"),
        pod("j-b", 10, 12, "Error", 2, message="x\nnew"),
    ]
    # every line of its message, as a person reads it (profiling lists one problem a line)
    assert _last_termination(pods) == "pod j-b: Error (exit 2): x; new"


def test_an_indexed_job_reports_the_rank_that_ended_first_in_the_newest_attempt():
    pods = [
        pod("j-0-a", 0, 30, "Error", 1, "0"),
        pod("j-1-a", 0, 20, "OOMKilled", 137, "1"),
        pod("j-0-b", 40, 61, "Error", 1, "0", message="gloo: connection closed by peer"),
        pod("j-1-b", 40, 60, "OOMKilled", 137, "1"),
    ]
    assert _last_termination(pods) == "pod j-1-b: OOMKilled (exit 137)"
    assert _last_termination([]) == ""
