"""Operator reconcile latency and memory at 1, 10 and 100 MultiTaskDeployments.

The real operator (`kopf run --standalone --all-namespaces -m mtd_operator.kube.handlers`,
as in its image) runs as a process against the API emulator (tools/k8s_emulator); the
JobRunner plays kubelet with the FAKE trainer of tests/reliability/fake_mtd.py (a few ms
per step, same result files and result ConfigMaps), so what is measured is the operator,
not training. For each N, on a fresh emulator:

* apply → first Job: from just before the create call of a resource to the moment the API
  server stores the first Job labelled with that resource (p50 / p95 / max over the N),
  with all N applied back to back (as `kubectl apply -f dir/` would);
* one more resource applied once all are Ready: its apply → first Job (a warm operator;
  the first resources also pay for the operator's first reconcile pass);
* apply → Ready: until every resource is Ready (whole fake pipeline: profile, stages,
  evaluations, baselines, serving Deployment);
* the operator process's resident memory (VmRSS) when idle, once every resource has its
  first Job, at the end, and its peak (VmHWM).

    .venv/bin/python -m bench.operator_latency                    # N = 1, 10, 100
    .venv/bin/python -m bench.operator_latency --counts 1 10 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.stats import percentile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reliability.conftest import (  # noqa: E402
    ALL_TASKS,
    Cluster,
    precomputed_profiles,
    resource,
    write_data,
)

LABEL_DEPLOYMENT = "multitask.dev/deployment"
MTD_WATCH = re.compile(r"multitaskdeployments.*watch=(true|1)")


def rss_kib(pid: int, field: str = "VmRSS") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def watching(cluster: Cluster) -> bool:
    streams = getattr(cluster.emulator.handler, "_streams", None)
    if streams is None:  # pragma: no cover - emulator internals changed
        return False
    return any(MTD_WATCH.search(path_qs) for path_qs, _ in list(streams.values()))


class RssSampler:
    """The operator's resident memory every 0.25 s, on a thread, while the load runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_kib(self.pid)
            if value:
                self.samples.append(value)
            self._stop.wait(0.25)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_for_operator(cluster: Cluster, operator) -> None:
    deadline = time.monotonic() + 60
    while not watching(cluster):
        if time.monotonic() > deadline or operator.poll() is not None:
            raise RuntimeError("the operator did not start:\n" + cluster.operator_logs())
        time.sleep(0.05)
    time.sleep(1.0)  # let it settle (peering, initial lists)


def summary(
    count: int,
    apply_seconds: float,
    latencies: list[float],
    warm: float | None,
    ready: list[float],
    jobs: int,
    rss: dict[str, int | None],
) -> dict[str, Any]:
    """The figures of one load, as results JSON and the table report them."""
    return {
        "resources": count,
        "apply_seconds": round(apply_seconds, 3),
        "first_job_seconds": {
            "p50": round(percentile(latencies, 0.5), 3),
            "p95": round(percentile(latencies, 0.95), 3),
            "max": round(max(latencies), 3),
        },
        "warm_first_job_seconds": round(warm, 3) if warm is not None else None,
        "ready": {
            "count": len(ready),
            "p50_seconds": round(percentile(ready, 0.5), 2) if ready else None,
            "all_seconds": round(max(ready), 2) if len(ready) == count else None,
        },
        "jobs": jobs,
        "rss_mib": {key: round((value or 0) / 1024, 1) for key, value in rss.items()},
    }


def measure(count: int, tmp: Path, step_seconds: float, ready_timeout: float) -> dict[str, Any]:
    workspace = tmp / "workspace"
    workspace.mkdir(parents=True)
    write_data(workspace)
    profiles = precomputed_profiles(workspace, ALL_TASKS)
    names = [f"bench-{i:03d}" for i in range(count)]
    first_job: dict[str, float] = {}

    with Cluster(tmp, profiles=profiles, max_parallel=4, step_seconds=step_seconds) as cluster:

        def on_event(event: Any) -> None:  # runs in the emulator, under its store lock
            if event.type != "ADDED" or event.storage.plural != "jobs":
                return
            owner = (event.obj["metadata"].get("labels") or {}).get(LABEL_DEPLOYMENT)
            if owner is not None and owner not in first_job:
                first_job[owner] = time.monotonic()

        unsubscribe = cluster.emulator.store.subscribe(on_event)
        operator = cluster.start_operator()
        wait_for_operator(cluster, operator)
        idle = rss_kib(operator.pid)

        with RssSampler(operator.pid) as sampler:
            applied: dict[str, float] = {}
            t0 = time.monotonic()
            for name in names:
                applied[name] = time.monotonic()
                cluster.apply(resource(name, "default", ALL_TASKS))
            apply_seconds = time.monotonic() - t0
            deadline = time.monotonic() + ready_timeout
            while len([n for n in names if n in first_job]) < count:
                if time.monotonic() > deadline:
                    raise RuntimeError("not every resource got a Job:\n" + cluster.operator_logs())
                time.sleep(0.02)
            after_first_jobs = rss_kib(operator.pid)
            latencies = [first_job[n] - applied[n] for n in names]

            ready_at: dict[str, float] = {}
            while len(ready_at) < count and time.monotonic() < deadline:
                for name in names:
                    if name not in ready_at and cluster.ready(name):
                        ready_at[name] = time.monotonic()
                time.sleep(0.2)
            jobs = len(cluster.emulator.list("batch/v1/jobs"))
            # One more resource once everything is settled: the latency of a warm operator.
            warm_name = "bench-warm"
            warm_applied = time.monotonic()
            cluster.apply(resource(warm_name, "default", ALL_TASKS))
            while warm_name not in first_job and time.monotonic() < deadline + 60:
                time.sleep(0.01)
            warm = first_job[warm_name] - warm_applied if warm_name in first_job else None
        end = rss_kib(operator.pid)
        peak = rss_kib(operator.pid, "VmHWM") or max(sampler.samples, default=0)
        unsubscribe()

    ready = [ready_at[n] - applied[n] for n in names if n in ready_at]
    rss = {"idle": idle, "after_first_jobs": after_first_jobs, "end": end, "peak": peak}
    return summary(count, apply_seconds, latencies, warm, ready, jobs, rss)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| resources | apply → first Job p50 | p95 | max | one more, warm | all Ready after "
        "| Jobs run "
        "| operator RSS idle | after first Jobs | end | peak |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        f = r["first_job_seconds"]
        rss = r["rss_mib"]
        ready = r["ready"]["all_seconds"]
        lines.append(
            f"| {r['resources']} | {f['p50'] * 1000:.0f} ms | {f['p95'] * 1000:.0f} ms | "
            f"{f['max'] * 1000:.0f} ms | "
            f"{f'{warm * 1000:.0f} ms' if (warm := r['warm_first_job_seconds']) else '–'} | "
            f"{f'{ready:.1f} s' if ready is not None else 'timeout'} | {r['jobs']} | "
            f"{rss['idle']:.0f} MiB | {rss['after_first_jobs']:.0f} MiB | {rss['end']:.0f} MiB "
            f"| {rss['peak']:.0f} MiB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--step-seconds", type=float, default=0.05,
                        help="how long each fake trainer step sleeps (default 0.05)")  # fmt: skip
    parser.add_argument("--ready-timeout", type=float, default=600)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = []
    load_start = os.getloadavg()
    for count in args.counts:
        with tempfile.TemporaryDirectory(prefix=f"oplat-{count}-") as tmp:
            row = measure(count, Path(tmp), args.step_seconds, args.ready_timeout)
        rows.append(row)
        print(json.dumps(row), flush=True)
    from importlib.metadata import version

    info = {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "python": platform.python_version(),
        "kopf": version("kopf"),
        "load_average_start": round(load_start[0], 2),
        "load_average_end": round(os.getloadavg()[0], 2),
    }
    print()
    print(table(rows))
    print()
    print(", ".join(f"{k} {v}" for k, v in info.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, **info}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
