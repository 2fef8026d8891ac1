"""The kubelet-like job runner: local execution, status, pods, retries, injected faults."""

from __future__ import annotations

import pathlib
from typing import Any

from k8s_emulator import Emulator, JobRunner

JOBS = "batch/v1/jobs"


def _job(
    name: str,
    code: str,
    *,
    backoff: int = 0,
    env: dict[str, str] | None = None,
    workdir: str | None = None,
    policy: str = "File",
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "main",
        "image": "trainer:dev",
        "command": ["python", "-c"],
        "args": [code],
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
        "volumeMounts": [{"name": "workspace", "mountPath": "/workspace"}],
        "terminationMessagePolicy": policy,
    }
    if workdir:
        container["workingDir"] = workdir
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    "volumes": [
                        {"name": "workspace", "persistentVolumeClaim": {"claimName": "ws"}}
                    ],
                }
            },
        },
    }


def _finished(emulator: Emulator, name: str) -> dict[str, Any] | None:
    job = emulator.try_get(JOBS, name)
    conds = (job or {}).get("status", {}).get("conditions") or []
    return job if any(c["type"] in ("Complete", "Failed") for c in conds) else None


def _pods(emulator: Emulator, job: str) -> list[dict[str, Any]]:
    return [
        p
        for p in emulator.list("v1/pods", "default")
        if p["metadata"]["labels"].get("job-name") == job
    ]


def test_job_runs_to_success(
    emulator: Emulator, job_runner: JobRunner, tmp_path: pathlib.Path
) -> None:
    code = (
        "import os, pathlib; pathlib.Path('out.txt').write_text(os.environ['GREETING']);"
        "open(os.environ['TERMINATION_MESSAGE_PATH'], 'w').write('{\"score\": 0.9}')"
    )
    emulator.create(_job("ok", code, env={"GREETING": "hi"}, workdir="/workspace/run"))
    job = emulator.wait_for(lambda: _finished(emulator, "ok"), timeout=20)
    status = job["status"]
    assert status["succeeded"] == 1 and status["startTime"] and status["completionTime"]
    assert "active" not in status
    assert {c["type"]: c["status"] for c in status["conditions"]}["Complete"] == "True"
    assert (tmp_path / "workspace" / "run" / "out.txt").read_text() == "hi"

    [pod] = _pods(emulator, "ok")
    assert pod["status"]["phase"] == "Succeeded"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    assert terminated["message"] == '{"score": 0.9}'
    assert pod["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]

    # Deleting the Job (background propagation) garbage-collects its pod.
    emulator.delete(JOBS, "ok", propagation="Background")
    assert _pods(emulator, "ok") == []


def test_job_failure_retries_up_to_backoff_limit(emulator: Emulator, job_runner: JobRunner) -> None:
    code = "import sys; print('boom', file=sys.stderr); sys.exit(3)"
    emulator.create(_job("bad", code, backoff=2))
    job = emulator.wait_for(lambda: _finished(emulator, "bad"), timeout=20)
    assert job["status"]["failed"] == 3
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded" and "boom" in failed["message"]
    pods = _pods(emulator, "bad")
    assert len(pods) == 3 and job_runner.started.count("default/bad") == 3
    term = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error" and term["message"] == "boom"


def test_oom_kill_and_fallback_to_logs(emulator: Emulator, job_runner: JobRunner) -> None:
    emulator.create(_job("oom", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    emulator.create(
        _job("logs", "print('last words'); raise SystemExit(1)", policy="FallbackToLogsOnError")
    )
    emulator.wait_for(
        lambda: _finished(emulator, "oom") and _finished(emulator, "logs"), timeout=20
    )
    oom = _pods(emulator, "oom")[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (oom["exitCode"], oom["reason"]) == (137, "OOMKilled")
    logs = _pods(emulator, "logs")[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert "last words" in logs["message"]


def test_injected_failures_and_pause(emulator: Emulator, job_runner: JobRunner) -> None:
    job_runner.fail_next(
        "default/flaky", exit_code=137, reason="OOMKilled", message="out of memory"
    )
    job_runner.pause("default/held")
    emulator.create(_job("flaky", "pass", backoff=1))
    emulator.create(_job("held", "pass"))
    job = emulator.wait_for(lambda: _finished(emulator, "flaky"), timeout=20)
    assert job["status"]["succeeded"] == 1 and job["status"]["failed"] == 1

    def created_rv(pod: dict[str, Any]) -> int:  # kmock keeps each object's history
        history = emulator.objects["v1/pods", "default", pod["metadata"]["name"]].history
        return int(history[0]["metadata"]["resourceVersion"])

    first = min(_pods(emulator, "flaky"), key=created_rv)
    assert first["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "OOMKilled"

    assert _finished(emulator, "held") is None and "default/held" not in job_runner.started
    job_runner.resume()
    emulator.wait_for(lambda: _finished(emulator, "held"), timeout=20)


def test_deleting_a_running_job_kills_it(
    emulator: Emulator, job_runner: JobRunner, tmp_path: pathlib.Path
) -> None:
    emulator.create(_job("long", "import time; time.sleep(60)"))
    emulator.wait_for(
        lambda: (emulator.try_get(JOBS, "long") or {}).get("status", {}).get("active"), timeout=10
    )
    emulator.wait_for(lambda: _pods(emulator, "long"), timeout=10)
    emulator.delete(JOBS, "long", propagation="Background")
    emulator.wait_for(lambda: not _pods(emulator, "long"), timeout=10)


def _with_policy(job: dict[str, Any], codes: list[int]) -> dict[str, Any]:
    job["spec"]["podFailurePolicy"] = {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "main", "operator": "In", "values": codes},
            }
        ]
    }
    return job


def test_pod_failure_policy_fails_the_job_at_once(
    emulator: Emulator, job_runner: JobRunner
) -> None:
    emulator.create(_with_policy(_job("input", "import sys; sys.exit(2)", backoff=3), [2]))
    emulator.create(_with_policy(_job("other", "import sys; sys.exit(1)", backoff=1), [2]))
    job = emulator.wait_for(lambda: _finished(emulator, "input"), timeout=20)
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "PodFailurePolicy" and "exit code 2" in failed["message"]
    assert job["status"]["failed"] == 1 and len(_pods(emulator, "input")) == 1
    other = emulator.wait_for(lambda: _finished(emulator, "other"), timeout=20)
    assert other["status"]["failed"] == 2  # not matched: retried up to backoffLimit


def test_image_mode_runs_only_what_the_image_has(
    emulator: Emulator, tmp_path: pathlib.Path
) -> None:
    image_bin = tmp_path / "image" / "bin"
    image_bin.mkdir(parents=True)
    tool = image_bin / "tool"
    tool.write_text(
        '#!/bin/sh\necho "$PWD $HOME ${SECRET:-none} $GREETING" > /dev/stderr\nexit 3\n'
    )
    tool.chmod(0o755)
    with JobRunner(
        emulator, path_map={"/workspace": str(tmp_path / "ws")}, image_bin=str(image_bin)
    ):
        absent = _job("absent", "")
        absent["spec"]["template"]["spec"]["containers"][0].update(command=["mtd"], args=[])
        emulator.create(absent)
        present = _job("present", "", env={"GREETING": "hi"})
        present["spec"]["template"]["spec"]["containers"][0].update(command=["tool"], args=[])
        emulator.create(present)
        job = emulator.wait_for(lambda: _finished(emulator, "absent"), timeout=20)
        [pod] = _pods(emulator, "absent")
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["reason"] == "StartError"
        assert 'exec: "mtd": executable file not found in $PATH' in terminated["message"]
        assert job["status"]["failed"] == 1
        emulator.wait_for(lambda: _finished(emulator, "present"), timeout=20)
        [pod] = _pods(emulator, "present")
        words = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"].split()
        assert words[2:] == ["none", "hi"]  # the pod's env only
        assert words[0].endswith("/workdir") and words[1].endswith("/home")


def test_indexed_job_replaces_only_the_failed_index(
    emulator: Emulator, job_runner: JobRunner, tmp_path: pathlib.Path
) -> None:
    """Both pods at once with their JOB_COMPLETION_INDEX; pod 0's DNS name becomes
    127.0.0.1:<port>, one port for the Job's life; pod 1 fails once and the Job controller
    replaces pod 1 alone (pkg/controller/job), so rank 0 ran once and rank 1 twice."""
    code = (
        "import os, pathlib, sys; i = os.environ['JOB_COMPLETION_INDEX'];"
        "assert sys.argv[1].startswith('127.0.0.1:'), sys.argv;"
        "pathlib.Path('/workspace').mkdir(exist_ok=True);"
        "marker = pathlib.Path('/workspace/failed-once');"
        "first = i == '1' and not marker.exists(); marker.touch() if first else None;"
        "pathlib.Path(f'/workspace/ran-{i}').open('a').write(sys.argv[1] + chr(10));"
        "sys.exit(5 if first else 0)"
    )
    job = _job("ranks", code, backoff=3)
    job["spec"].update({"completionMode": "Indexed", "completions": 2, "parallelism": 2})
    job["spec"]["template"]["spec"]["subdomain"] = "ranks-svc"
    job["spec"]["template"]["spec"]["containers"][0]["args"] += [
        "ranks-0.ranks-svc.default.svc:29400"
    ]
    emulator.create(job)
    done = emulator.wait_for(lambda: _finished(emulator, "ranks"), timeout=30)
    assert {c["type"] for c in done["status"]["conditions"]} >= {"Complete"}, done["status"]
    assert done["status"]["succeeded"] == 2 and done["status"]["failed"] == 1
    workspace = tmp_path / "workspace"
    ran = {i: (workspace / f"ran-{i}").read_text().split() for i in ("0", "1")}
    assert len(ran["0"]) == 1 and len(ran["1"]) == 2
    assert len(set(ran["0"] + ran["1"])) == 1  # the same rendezvous address throughout
    pods = _pods(emulator, "ranks")
    indexes = sorted(
        p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] for p in pods
    )
    assert indexes == ["0", "1", "1"]


def test_an_indexed_job_past_its_backoff_limit_stops_its_other_pods(
    emulator: Emulator, job_runner: JobRunner, tmp_path: pathlib.Path
) -> None:
    """Rank 1 keeps failing: past backoffLimit the Job fails and rank 0, still running,
    is stopped (the Job controller deletes a failed Job's active pods)."""
    code = (
        "import os, sys, time; i = os.environ['JOB_COMPLETION_INDEX'];"
        "time.sleep(600) if i == '0' else sys.exit(3)"
    )
    job = _job("stuck", code, backoff=1)
    job["spec"].update({"completionMode": "Indexed", "completions": 2, "parallelism": 2})
    emulator.create(job)
    done = emulator.wait_for(lambda: _finished(emulator, "stuck"), timeout=30)
    failed = {c["type"]: c for c in done["status"]["conditions"]}["Failed"]
    assert failed["reason"] == "BackoffLimitExceeded" and done["status"]["failed"] == 2
    rank0 = [
        p
        for p in _pods(emulator, "stuck")
        if p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == "0"
    ]
    assert len(rank0) == 1
    emulator.wait_for(
        lambda: (
            "terminated"
            in (
                emulator.get("v1/pods", rank0[0]["metadata"]["name"], "default")["status"][
                    "containerStatuses"
                ][0]["state"]
            )
        ),
        timeout=30,
    )
