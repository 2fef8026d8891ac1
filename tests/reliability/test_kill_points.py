"""The operator SIGKILLed after every API write it makes, and restarted each time.

The kill happens inside the API server, after the write is stored and before the
operator reads the response, so the operator never learns its write succeeded. After
each kill a fresh `kopf run` starts, armed to die at its next write, so one pipeline run
visits every write point in turn. Two schedules:

* after each create: every child ConfigMap and Job, the serving Deployment and Service
  (25: 4 of them the composition's merge and evaluation, 3 the task gateway's Deployment,
  Service and catalogue), with Jobs running as fast as they can;
* after each status patch: every status the uninterrupted run writes. Left to timing,
  Jobs end within one pass of each other and a restarted operator's first pass folds
  several changes into one patch, so a run reaches only some of those statuses. Here
  the JobRunner and the DeploymentController are stepped (conftest.run_stepped): a Job
  starts or ends, or a rollout advances, only once the operator has caught up with the
  previous change, the same order in both runs. The uninterrupted run's sequence of
  statuses is then the same every time, and the killed run must write exactly that
  sequence, each status once, dying after every one of them.

Proven: the pipeline completes; no Job is created twice (the emulator's event log) and
none ran twice (the JobRunner); no finished step ran again (the trainer's own log); the
final status is the uninterrupted run's status, timestamps aside.

The Jobs run the FAKE trainer of fake_mtd.py (a few ms per step, same result files and
result ConfigMaps); test_real_trainer.py kills the operator with the real trainer too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .conftest import (
    ALL_TASKS,
    COMPOSITIONS,
    precomputed_profiles,
    resource,
    strip_times,
    write_data,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

BODY = resource("support", "default", ALL_TASKS, COMPOSITIONS)  # 3 tasks, 1 composition


def new_cluster(make_cluster, tmp_path: Path, name: str, **kwargs):
    workspace = tmp_path / name / "workspace"
    workspace.mkdir(parents=True)
    write_data(workspace)
    profiles = precomputed_profiles(workspace, ALL_TASKS, COMPOSITIONS)
    return make_cluster(name, profiles=profiles, **kwargs)


def assert_quiet(cluster, seconds: float) -> None:
    """Anything written after Ready would be a bug (and would be a kill point)."""
    before = len(cluster.writes)
    time.sleep(seconds)
    assert cluster.writes[before:] == [], cluster.writes[before:]


def test_operator_killed_after_each_create(make_cluster, tmp_path: Path) -> None:
    """A pass creates what is missing and then writes status, so dying at every create
    never reaches the status patches of those passes: the next test dies at those."""
    points = ("create", "patch")
    reference = new_cluster(make_cluster, tmp_path, "reference")
    reference.start_operator()
    reference.apply(BODY)
    expected = strip_times(reference.wait_ready("support")["status"])
    assert_quiet(reference, 1.5)
    reference.assert_no_duplicates()
    expected_writes = list(reference.writes)
    reference.__exit__(None, None, None)

    cluster = new_cluster(make_cluster, tmp_path, "killed")
    cluster.arm_kill(*points)
    cluster.start_operator()
    cluster.apply(BODY)
    limit = 3 * len(expected_writes)
    calm_since = time.monotonic()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        process = cluster.operator
        assert process is not None
        if process.poll() is not None:
            assert process.returncode == -9, cluster.operator_logs()
            assert len(cluster.kills) <= limit, f"no convergence: {cluster.kills}"
            cluster.arm_kill(*points)
            cluster.start_operator()
            calm_since = time.monotonic()
        elif cluster.ready("support") and time.monotonic() - calm_since > 4:
            break  # Ready, and a restarted operator found nothing left to write
        time.sleep(0.05)
    else:
        raise AssertionError(f"not Ready; kills so far: {cluster.kills}\n"
                             f"{cluster.operator_logs()}")  # fmt: skip
    cluster.disarm()

    kills = list(cluster.kills)
    expected_points = {w for w in expected_writes if w.startswith(points)}
    assert expected_points <= set(kills), expected_points - set(kills)
    assert len(expected_points) == 25, expected_points  # 18, the composition's 2 Jobs + 2 CMs,
    # the gateway's Deployment and Service and its catalogue ConfigMap
    cluster.assert_no_duplicates()
    status = cluster.get("support")["status"]  # type: ignore[index]
    assert strip_times(status) == expected
    assert "Traceback" not in cluster.all_operator_logs()
    print(f"\n{len(kills)} kill points after creates ({len(expected_points)} distinct); "
          f"the reference run wrote {len(expected_writes)} times:\n"
          + "\n".join(kills))  # fmt: skip


def test_operator_killed_after_each_status_patch(make_cluster, tmp_path: Path) -> None:
    # The reference: one uninterrupted run, stepped.
    started = time.monotonic()
    reference = new_cluster(make_cluster, tmp_path, "reference", stepped=True, step_seconds=0.05)
    reference.apply(BODY)
    changes = reference.run_stepped("support")
    expected = strip_times(reference.get("support")["status"])  # type: ignore[index]
    assert_quiet(reference, 1.5)
    reference.assert_no_duplicates()
    expected_statuses = list(reference.statuses)
    reference.__exit__(None, None, None)
    reference_seconds = time.monotonic() - started
    distinct = {json.dumps(s, sort_keys=True) for s in expected_statuses}
    # Every status differs from the one before it (else it is no write); none comes back.
    assert len(distinct) == len(expected_statuses)

    # The same resource, stepped the same way, the operator SIGKILLed at each status patch.
    cluster = new_cluster(make_cluster, tmp_path, "killed", stepped=True, step_seconds=0.05)
    cluster.apply(BODY)
    assert cluster.run_stepped("support", kill_at=("status",)) == changes
    cluster.disarm()
    assert_quiet(cluster, 4)  # the last restart found nothing left to write

    kills = list(cluster.kills)
    assert all(k.startswith("status") for k in kills), kills
    # Each status of the uninterrupted run was written once, in the same order, and the
    # operator died right after writing it: every distinct status patch is a kill point.
    assert cluster.statuses == expected_statuses
    assert len(kills) == len(distinct)
    cluster.assert_no_duplicates()
    status = cluster.get("support")["status"]  # type: ignore[index]
    assert strip_times(status) == expected
    assert "Traceback" not in cluster.all_operator_logs()
    print(f"\n{len(kills)} kill points after status patches = {len(distinct)} distinct status "
          f"patches of the reference run ({changes} stepped changes; reference "
          f"{reference_seconds:.0f} s):\n" + "\n".join(kills))  # fmt: skip
