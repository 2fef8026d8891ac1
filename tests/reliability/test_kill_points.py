"""The operator SIGKILLed after every API write it makes, and restarted each time.

Kill points: every distinct write of the operator in one pipeline run (each child
ConfigMap/Job create, the serving Deployment and Service creates, each status patch that
changes something). The kill happens inside the API server, after the write is stored
and before the operator reads the response, so the operator never learns its write
succeeded. After each kill a fresh `kopf run` starts, armed to die at its next write, so
one pipeline run visits every write point in turn (~30 of them).

Proven: the pipeline completes; no Job is created twice (the emulator's event log) and
none ran twice (the JobRunner); no finished step ran again (the trainer's own log); the
final status is the uninterrupted run's status, timestamps aside.

The Jobs run the FAKE trainer of fake_mtd.py (a few ms per step, same result files and
result ConfigMaps); test_real_trainer.py kills the operator with the real trainer too.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .conftest import ALL_TASKS, precomputed_profiles, resource, strip_times, write_data

pytestmark = [pytest.mark.operator, pytest.mark.slow, pytest.mark.timeout(400)]


@pytest.mark.parametrize(
    "points", [("create", "patch"), ("status",)], ids=["after-each-create", "after-each-status"]
)
def test_operator_killed_at_every_write_point(
    make_cluster, tmp_path: Path, points: tuple[str, ...]
) -> None:
    """`points` picks the writes to die at: a pass creates what is missing and then writes
    status, so dying at every create never reaches the status patches of those passes;
    the second schedule lets creates through and dies at every status patch instead."""
    body = resource("support", "default", ALL_TASKS)

    # The reference: one uninterrupted run.
    ref_ws = tmp_path / "reference" / "workspace"
    ref_ws.mkdir(parents=True)
    write_data(ref_ws)
    reference = make_cluster("reference", profiles=precomputed_profiles(ref_ws, ALL_TASKS))
    reference.start_operator()
    reference.apply(body)
    expected = strip_times(reference.wait_ready("support")["status"])
    time.sleep(1.5)  # anything written after Ready would be a bug, and a kill point below
    reference.assert_no_duplicates()
    expected_writes = list(reference.writes)
    reference.__exit__(None, None, None)

    # The same resource, with the operator SIGKILLed at each of its writes in turn.
    ws = tmp_path / "killed" / "workspace"
    ws.mkdir(parents=True)
    write_data(ws)
    cluster = make_cluster("killed", profiles=precomputed_profiles(ws, ALL_TASKS))
    cluster.arm_kill(*points)
    cluster.start_operator()
    cluster.apply(body)
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
    if points == ("status",):
        # status writes are identified by the Ready reason they carry
        assert {w for w in kills} >= {w for w in expected_points if "Ready=True" in w}
        assert len(kills) >= 6, kills
    else:
        assert expected_points <= set(kills), expected_points - set(kills)
    cluster.assert_no_duplicates()
    status = cluster.get("support")["status"]  # type: ignore[index]
    assert strip_times(status) == expected
    assert "Traceback" not in cluster.all_operator_logs()
    print(f"\n{points}: {len(kills)} kill points; the reference run wrote "
          f"{len(expected_writes)} times:\n" + "\n".join(kills))  # fmt: skip
