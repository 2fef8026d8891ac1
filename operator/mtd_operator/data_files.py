"""Reading the data files a spec names, for the core's profiler (core/profile.py).

Both drivers profile through here: `mtd run`, `validate` and `plan` in process
(specfile.py, data beside the spec file), and the profiling Job's `mtd profile`
(pod/jobs.py, data on the workspace volume). This module does the I/O the core may not:
it resolves each path under the data path rule, checks the file is there, and streams
its lines (bounded, `mtd_contract.records.lines`) into a `FileProfiler`.
"""

from __future__ import annotations

from pathlib import Path

from mtd_contract.records import lines

from .api.spec import MultiTaskDeploymentSpec
from .core.problems import Problem
from .core.profile import (
    CompositionProfile,
    DataFile,
    FileProfiler,
    FileResult,
    TaskProfile,
    composition_files,
    composition_profiles,
    task_files,
    task_profiles,
)


class DataPathError(ValueError):
    """A data path that leaves its folder (absolute elsewhere, `../`, or a symlink out)."""


def resolve_data_path(path: str, base_dir: Path) -> Path:
    """`path` resolved against `base_dir`, symlinks followed; it must stay inside it.

    Locally `base_dir` is the spec file's folder, on a cluster the workspace volume: a
    spec must not make the operator read (and quote) `/etc/passwd` or
    `/proc/self/environ`, nor a file of another deployment's data."""
    base = base_dir.resolve()
    candidate = (base / path).resolve()
    if not candidate.is_relative_to(base):
        raise DataPathError(
            f"{path!r} resolves to {candidate}, outside {base}; data paths must stay "
            "inside the spec file's folder (locally) or the workspace volume (on a cluster)"
        )
    return candidate


def profile_file(path: Path, field_path: str, labels: list[str] | None) -> FileResult:
    """Stream one JSON Lines file; return its profile, or the problems that make it unusable."""
    profiler = FileProfiler(str(path), field_path, labels)
    try:  # a folder on the way without search permission raises here (EACCES)
        exists, regular = path.exists(), path.is_file()
    except OSError as exc:
        profiler.problem(None, f"cannot be read: {exc.strerror or exc}")
        return None, profiler.problems
    if not exists:
        profiler.problem(None, "file does not exist")
        return None, profiler.problems
    if not regular:
        profiler.problem(None, "is not a regular file")
        return None, profiler.problems
    try:
        with path.open("rb") as handle:
            for line_no, raw in lines(handle):
                profiler.add(line_no, raw)
    except OSError as exc:
        profiler.problem(None, f"cannot be read: {exc.strerror}")
        return None, profiler.problems
    return profiler.result()


def profile_path(file: DataFile, base_dir: Path) -> FileResult:
    """Profile the file a spec field names, once its path is known to stay inside."""
    try:
        resolved = resolve_data_path(file.path, base_dir)
    except DataPathError as exc:
        return None, [Problem(file.field_path, str(exc))]
    return profile_file(resolved, file.field_path, file.labels)


def _read(files: list[DataFile], base_dir: Path) -> dict[str, FileResult]:
    return {file.field_path: profile_path(file, base_dir) for file in files}


def profile_spec(
    spec: MultiTaskDeploymentSpec, base_dir: Path
) -> tuple[dict[str, TaskProfile], list[Problem]]:
    """Profile every task's files under `base_dir`; all their problems together."""
    return task_profiles(spec, _read(task_files(spec), base_dir))


def profile_compositions(
    spec: MultiTaskDeploymentSpec, base_dir: Path
) -> tuple[dict[str, CompositionProfile], list[Problem]]:
    """Profile every composition's eval and calibration files (problems all together)."""
    return composition_profiles(spec, _read(composition_files(spec), base_dir))
