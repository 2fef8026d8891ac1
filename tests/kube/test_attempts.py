"""`status.stages[].attempts` counts a step's attempts, not its pods: a multi-node
(Indexed) Job's failed attempt fails up to every pod, and its success completes them all."""

from __future__ import annotations

import pytest
from kubernetes.client import V1Job, V1JobSpec, V1JobStatus, V1PodTemplateSpec

from mtd_operator.kube.controller import job_attempts


def job(nodes: int, failed: int = 0, active: int = 0, succeeded: int = 0) -> V1Job:
    indexed = {"completion_mode": "Indexed", "completions": nodes} if nodes > 1 else {}
    return V1Job(
        spec=V1JobSpec(template=V1PodTemplateSpec(), **indexed),
        status=V1JobStatus(failed=failed or None, active=active or None,
                           succeeded=succeeded or None),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("nodes", "failed", "active", "succeeded", "attempts"),
    [
        (1, 0, 0, 0, 0),  # created, no pod yet
        (1, 0, 1, 0, 1),
        (1, 2, 1, 0, 3),
        (1, 1, 0, 1, 2),
        (2, 0, 2, 0, 1),  # both ranks of the first attempt run
        (2, 0, 0, 2, 1),  # and complete: one attempt, not two
        (2, 2, 2, 0, 2),  # one attempt failed on both pods, the retry runs
        (
            2,
            1,
            1,
            0,
            2,
        ),  # one rank failed; the pod still active (its peer or its retry) counts as the retry
        (2, 4, 0, 2, 3),
        (3, 6, 0, 0, 2),  # two whole failed attempts, the Job gave up
    ],
)
def test_attempts_count_attempts_not_pods(nodes, failed, active, succeeded, attempts):
    assert job_attempts(job(nodes, failed, active, succeeded)) == attempts
