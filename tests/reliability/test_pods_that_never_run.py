"""Jobs whose pods never run say so: the step's condition and Ready turn False with reason
PodNotRunning, naming the pod (or the Job) and what the cluster reported, within a pass;
once the cause is fixed the pipeline goes on by itself. On the emulator, whose JobRunner
plays the Job controller and kubelet for these cases (a missing ServiceAccount refused by
admission, an image that cannot be pulled)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ALL_TASKS, condition, precomputed_profiles, resource, wait_until, write_data

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ACCOUNT = "multitask-trainer"  # OperatorConfig.trainer_service_account's default


def cluster_with_data(make_cluster, tmp_path: Path, **options):
    """A cluster whose workspace holds the toy tasks' data and their profiles."""
    ws = tmp_path / "c" / "workspace"
    ws.mkdir(parents=True)
    write_data(ws)
    return make_cluster("c", profiles=precomputed_profiles(ws, ALL_TASKS), **options)


def reported(cluster, type_: str, text: str):
    """The resource once condition `type_` is False/PodNotRunning mentioning `text`."""

    def check():
        obj = cluster.get("support")
        found = condition(obj, type_)
        if found.get("reason") == "PodNotRunning" and text in found.get("message", ""):
            return obj
        return None

    return wait_until(
        check, 60, f"{type_}=PodNotRunning naming {text!r}",
        lambda: str((cluster.get("support") or {}).get("status", {}).get("conditions")),
    )  # fmt: skip


def test_a_missing_trainer_service_account_is_reported_until_it_exists(
    make_cluster, tmp_path: Path
) -> None:
    cluster = cluster_with_data(make_cluster, tmp_path, require_service_accounts=True)
    cluster.start_operator()
    cluster.apply(resource("support", "default", ALL_TASKS))

    obj = reported(cluster, "Planned", f'serviceaccount "{ACCOUNT}" not found')
    message = condition(obj, "Planned")["message"]
    assert "FailedCreate" in message and "support-profile-" in message, message
    ready = condition(obj, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodNotRunning")
    assert not cluster.emulator.list("v1/pods", "default")  # admission created none

    cluster.emulator.create(
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": ACCOUNT, "namespace": "default"}}
    )  # fmt: skip
    wait_until(
        lambda: condition(cluster.get("support"), "Ready").get("status") == "True",
        120, "Ready once the account exists",
        lambda: str(cluster.get("support")["status"].get("conditions")),
    )  # fmt: skip


def test_an_image_that_cannot_be_pulled_is_reported_until_it_can(
    make_cluster, tmp_path: Path
) -> None:
    cluster = cluster_with_data(make_cluster, tmp_path)
    cluster.runner.hold_pods(r"-train-", "ImagePullBackOff")
    cluster.start_operator()
    cluster.apply(resource("support", "default", ALL_TASKS))

    obj = reported(cluster, "Trained", "ImagePullBackOff")
    message = condition(obj, "Trained")["message"]
    assert "pod support-train-" in message and "Back-off pulling image" in message, message
    ready = condition(obj, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodNotRunning")

    cluster.runner.release_pods()
    wait_until(
        lambda: condition(cluster.get("support"), "Ready").get("status") == "True",
        120, "Ready once the image pulls",
        lambda: str(cluster.get("support")["status"].get("conditions")),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("Unschedulable", "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."),
        ("CreateContainerConfigError", 'secret "hf-token" not found'),
    ],
)
def test_an_evaluation_pod_that_cannot_start_is_reported(
    make_cluster, tmp_path: Path, reason: str, message: str
) -> None:
    cluster = cluster_with_data(make_cluster, tmp_path)
    cluster.runner.hold_pods(r"/support-eval-", reason, message)
    cluster.start_operator()
    cluster.apply(resource("support", "default", ALL_TASKS))
    obj = reported(cluster, "Evaluated", f"{reason}: {message}")
    assert "pod support-eval-" in condition(obj, "Evaluated")["message"]

    def events() -> list[tuple[str, str, str]]:
        listed = cluster.emulator.list("v1/events", "default")
        return [(e["reason"], e["type"], e["message"]) for e in listed]

    # Recorded for the transition, just after the status write that shows it.
    def warned() -> bool:
        return any(r == "PodNotRunning" and t == "Warning" and reason in m for r, t, m in events())

    wait_until(warned, 30, "a PodNotRunning Warning Event", lambda: str(events()))
