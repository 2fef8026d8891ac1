"""The thread count: affinity mask and cgroup CPU quota (v2 and v1), on fake cgroup trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mtd_trainer.threads import cgroup_cpu_limit, configure_threads, thread_count, usable_cpus


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("affinity", "quota", "expected"),
    [(2, None, 2), (64, 2.0, 2), (64, 1.5, 1), (4, 0.2, 1), (2, 8.0, 2), (1, None, 1)],
)
def test_usable_cpus(affinity: int, quota: float | None, expected: int) -> None:
    assert usable_cpus(affinity, quota) == expected


def test_cgroup_v2_quota_of_own_group_and_ancestors(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    write(proc, "0::/kubepods/pod1/ctr\n")
    root = tmp_path / "fs"
    write(root / "cgroup.controllers", "cpu memory\n")
    write(root / "kubepods/pod1/ctr/cpu.max", "max 100000\n")
    write(root / "kubepods/pod1/cpu.max", "250000 100000\n")
    write(root / "kubepods/cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(root, proc) == 2.5


def test_cgroup_v2_unlimited_and_namespaced(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    write(proc, "0::/\n")
    root = tmp_path / "fs"
    write(root / "cgroup.controllers", "cpu\n")
    write(root / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(root, proc) is None
    write(root / "cpu.max", "150000 100000\n")  # a container's own namespace root
    assert cgroup_cpu_limit(root, proc) == 1.5


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    write(proc, "5:memory:/docker/x\n4:cpu,cpuacct:/docker/x\n0::/\n")
    root = tmp_path / "fs"
    write(root / "cpu,cpuacct/docker/x/cpu.cfs_quota_us", "300000\n")
    write(root / "cpu,cpuacct/docker/x/cpu.cfs_period_us", "100000\n")
    write(root / "cpu,cpuacct/cpu.cfs_quota_us", "-1\n")
    write(root / "cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(root, proc) == 3.0


def test_cgroup_missing_or_garbled_means_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path / "none", tmp_path / "none") is None
    proc = tmp_path / "cgroup"
    write(proc, "0::/a\n")
    write(tmp_path / "fs/cgroup.controllers", "cpu\n")
    write(tmp_path / "fs/a/cpu.max", "lots\n")
    assert cgroup_cpu_limit(tmp_path / "fs", proc) is None


def test_thread_count_honours_a_person_s_setting() -> None:
    assert thread_count({"OMP_NUM_THREADS": "3"}) == 3
    chosen = thread_count({"OMP_NUM_THREADS": "zero"})
    assert 1 <= chosen <= len(os.sched_getaffinity(0))


def test_configure_threads_sets_the_environment_for_children() -> None:
    env: dict[str, str] = {"OMP_NUM_THREADS": "1"}
    assert configure_threads(env) == 1
    assert env == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
