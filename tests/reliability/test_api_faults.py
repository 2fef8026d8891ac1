"""API errors injected through the emulator while a pipeline runs: the operator converges.

409 on creates and on status patches, bursts of 429 (with Retry-After), 500 and 503 on
reads, lists and writes, watch streams cut mid-stream and dropped, and a compacted
history (410 Gone on resume). Jobs run the FAKE trainer (fake_mtd.py); its pods' result
writes go through the same faulty API, so some pods fail and their Jobs retry, as on a
real cluster.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .conftest import ALL_TASKS, condition, precomputed_profiles, resource, write_data

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MTD_PATH = r"/multitaskdeployments"


def test_operator_converges_through_api_faults(make_cluster, tmp_path: Path) -> None:
    ws = tmp_path / "c" / "workspace"
    ws.mkdir(parents=True)
    write_data(ws)
    cluster = make_cluster("c", profiles=precomputed_profiles(ws, ALL_TASKS))
    emu = cluster.emulator
    faults = [
        emu.inject_fault("POST", r"/namespaces/default/jobs$", 409, count=2),
        emu.inject_fault("POST", r"/namespaces/default/configmaps$", 409, count=1),
        emu.inject_fault("PATCH", rf"{MTD_PATH}/support/status", 409, count=2),
        emu.inject_fault("GET", r"/jobs\?", 429, count=3, retry_after=1, watch=False),
        emu.inject_fault("GET", rf"{MTD_PATH}/support$", 500, count=3),
        emu.inject_fault("POST", r"/configmaps$", 503, count=2),
        emu.inject_fault("GET", r"/configmaps\?", 503, count=2, watch=False),
        emu.inject_fault("GET", r"/deployments/support-serving$", 500, count=2),
    ]
    cluster.start_operator()
    cluster.apply(resource("support", "default", ALL_TASKS))

    def burst(kind: str) -> None:
        if kind == "cut":
            faults.extend(
                emu.cut_watches(path, after_events=1, count=2)
                for path in (r"/jobs", r"/configmaps", MTD_PATH, r"/deployments")
            )
        elif kind == "drop":
            emu.drop_watches()
        elif kind == "gone":
            emu.expire_resource_versions()
            emu.drop_watches()
        elif kind == "5xx":
            faults.append(emu.inject_fault(None, r"/namespaces/default/", 503, count=6))
            faults.append(emu.inject_fault("PATCH", rf"{MTD_PATH}/support/status", 500))
        elif kind == "429":
            faults.append(
                emu.inject_fault(None, r"/namespaces/default/", 429, count=6, retry_after=1)
            )

    # One burst of each kind every 1.5 s while the pipeline runs (twice round), then calm.
    bursts = 0
    for kind in ["cut", "5xx", "drop", "429", "gone"] * 2:
        if cluster.ready("support"):
            break
        burst(kind)
        bursts += 1
        time.sleep(1.5)
    # An outage ends: faults not yet consumed are forgotten (they are counters, not time
    # windows, and a backed-off operator makes few requests). Backoff tops out at 30 s.
    emu.clear_faults()
    obj = cluster.wait_ready("support", timeout=150)

    hits = sum(len(f.hits) for f in faults)
    assert hits >= 15, [(f.path.pattern, f.hits) for f in faults]
    assert {c["type"]: c["status"] for c in obj["status"]["conditions"]} == {
        "Planned": "True", "Trained": "True", "Evaluated": "True", "Qualified": "False",
        "EvalSufficient": "False", "Serving": "True", "Ready": "True",
    }  # fmt: skip
    assert all(row["state"] == "Succeeded" for row in obj["status"]["stages"])
    assert [row["score"] for row in obj["status"]["tasks"]] == [0.75, 0.75, 0.75]
    cluster.assert_no_duplicates(pod_retries=True)
    assert condition(obj, "Ready")["reason"] == "Ready"
    print(f"\n{hits} injected faults hit, {bursts} bursts (cuts, drops, 410s, 5xx, 429)")
