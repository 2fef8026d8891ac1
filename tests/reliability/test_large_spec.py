"""Any spec the CRD allows round-trips through the operator.

kopf's diff base (a copy of the spec in the `last-handled-configuration` annotation)
would cap a spec at the API server's 256 KiB for all annotations together, which one
CRD-legal task of 1,000 labels of 256 characters nearly fills alone. The operator keeps no
diff base, so such a resource is handled like any other: here its data lacks those
labels, and the status says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtd_operator.api.spec import MAX_LABEL_CHARS, MAX_LABELS
from tests.support.tiny_tasks import task

from .conftest import SENTIMENT, condition, resource, wait_until, write_data

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_a_spec_over_256_kib_is_handled_and_gets_a_status(make_cluster, tmp_path: Path) -> None:
    ws = tmp_path / "c" / "workspace"
    ws.mkdir(parents=True)
    write_data(ws)
    cluster = make_cluster("c", fake=False)
    labels = [f"{i:04d}-" + "x" * (MAX_LABEL_CHARS - 5) for i in range(MAX_LABELS)]
    wide = task("wide", "classification", labels=labels, baseline={"score": 0.5})
    wide["data"] = SENTIMENT["data"]
    body = resource("support", "default", [wide, {**wide, "name": "other"}, SENTIMENT])
    assert len(json.dumps(body["spec"])) > 256 * 1024 * 1.9
    cluster.start_operator()
    cluster.apply(body)

    def reported():
        obj = cluster.get("support")
        planned = condition(obj, "Planned")
        return obj if planned.get("status") == "False" else None

    obj = wait_until(reported, 120, "a status for the large spec", cluster.operator_logs)
    planned = condition(obj, "Planned")
    assert "support-profile-" in planned["message"] and "0001-xxx" in planned["message"]
    annotations = obj["metadata"].get("annotations") or {}
    assert not [k for k in annotations if k.endswith("last-handled-configuration")]
    logs = cluster.all_operator_logs()
    assert "Too long" not in logs and "Traceback" not in logs, logs[-3000:]
