"""How many CPU threads torch may use: the CPUs this process can really run on.

torch starts one OpenMP thread per core the kernel reports, which is wrong twice over:
a process pinned to fewer cores (`taskset`, a cpuset) or a pod under a CPU quota
(`resources.limits.cpu`) still sees every core of the host. More threads than usable
CPUs wait on each other at every parallel region, so a step slows by far more than the
CPU share it lost. This module counts the CPUs from the affinity mask and the cgroup
CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`, the lowest limit
on the path to the root counts), and applies the count before torch is imported.
Stdlib only: the control plane may import it too.
"""

from __future__ import annotations

import math
import os
from collections.abc import MutableMapping
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
# Read once by libgomp at load: idle OpenMP workers sleep instead of spinning, so a
# thread that lost its core to another process does not burn the one its peers need.
WAIT_POLICY = "PASSIVE"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _ancestors(mount: Path, relative: str) -> list[Path]:
    """The cgroup folder of this process and its parents up to the mount point."""
    folder = mount / relative.strip("/")
    if not folder.is_dir():  # no cgroup namespace: our own folder is the mount root
        return [mount]
    chain = [folder]
    while chain[-1] != mount:
        chain.append(chain[-1].parent)
    return chain


def _v2_limit(folder: Path) -> float | None:
    text = _read(folder / "cpu.max")
    if not text:
        return None
    quota, _, period = text.partition(" ")
    try:
        return None if quota == "max" else int(quota) / int(period or "100000")
    except (ValueError, ZeroDivisionError):
        return None


def _v1_limit(folder: Path) -> float | None:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    try:
        return None if quota is None or int(quota) <= 0 else int(quota) / int(period or "")
    except (ValueError, ZeroDivisionError):
        return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """CPUs the cgroup quota allows this process (e.g. 1.5), or None when unlimited."""
    membership = _read(proc_cgroup) or ""
    limits: list[float] = []
    for line in membership.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, relative = rest.partition(":")
        if hierarchy == "0" and not controllers:  # cgroup v2 (unified)
            mount, reader = root, _v2_limit
            if not (root / "cgroup.controllers").exists() and (root / "unified").is_dir():
                mount = root / "unified"  # hybrid layout: v2 beside v1
        elif "cpu" in controllers.split(","):
            mount = next(
                (
                    root / name
                    for name in (controllers, "cpu,cpuacct", "cpu")
                    if (root / name).is_dir()
                ),
                root / "cpu",
            )
            reader = _v1_limit
        else:
            continue
        for folder in _ancestors(mount, relative):
            limit = reader(folder)
            if limit is not None:
                limits.append(limit)
    return min(limits) if limits else None


def usable_cpus(affinity: int, quota: float | None) -> int:
    """Whole CPUs to use: the affinity mask, capped by the quota rounded down, at least 1.

    Rounded down because a thread beyond the quota is throttled every period and holds
    up the others at each OpenMP barrier.
    """
    cpus = affinity if quota is None else min(affinity, math.floor(quota))
    return max(1, cpus)


def thread_count(environ: MutableMapping[str, str] | None = None) -> int:
    """OMP_NUM_THREADS when a person set it to a positive integer, else the usable CPUs."""
    env = os.environ if environ is None else environ
    given = env.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    return usable_cpus(len(os.sched_getaffinity(0)), cgroup_cpu_limit())


def configure_threads(environ: MutableMapping[str, str] | None = None) -> int:
    """Set the thread environment for this process (call before importing torch) and for
    the processes it starts; returns the thread count."""
    env = os.environ if environ is None else environ
    threads = thread_count(env)
    env["OMP_NUM_THREADS"] = str(threads)
    env.setdefault("MKL_NUM_THREADS", str(threads))
    env.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    return threads
