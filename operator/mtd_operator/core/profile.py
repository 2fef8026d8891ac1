"""Data profiling: read each task's JSON Lines once, check it, count it, fingerprint it.

The planner needs example counts (high/low resource, sampling rates) and a content
fingerprint (stage hashes change when data changes). Profiling streams the files, so
memory does not grow with their size, and reports every bad line it finds (up to a
limit) with its file and line number. Locally it runs in-process; on a cluster the same
function runs inside a profiling Job (`mtd profile`).
"""

from __future__ import annotations

import hashlib
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mtd_contract.records import RecordError, check_line, lines

from ..api.spec import MultiTaskDeploymentSpec, TaskSpec
from .problems import Problem

MAX_PROBLEMS_PER_FILE = 5


@dataclass(frozen=True)
class FileProfile:
    path: str
    sha256: str
    examples: int
    label_counts: dict[str, int] = field(default_factory=dict)
    input_chars_p50: int = 0
    input_chars_p95: int = 0
    input_chars_max: int = 0
    output_chars_p50: int = 0
    output_chars_max: int = 0


@dataclass(frozen=True)
class TaskProfile:
    train: FileProfile
    eval: FileProfile | None = None

    @property
    def train_examples(self) -> int:
        return self.train.examples

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> TaskProfile:
        return cls(
            train=FileProfile(**raw["train"]),
            eval=FileProfile(**raw["eval"]) if raw.get("eval") else None,
        )


@dataclass(frozen=True)
class CompositionProfile:
    """A composition's own files: its held-out set and its calibration set, both optional."""

    eval: FileProfile | None = None
    calibration: FileProfile | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> CompositionProfile:
        return cls(
            eval=FileProfile(**raw["eval"]) if raw.get("eval") else None,
            calibration=FileProfile(**raw["calibration"]) if raw.get("calibration") else None,
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


def _percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    index = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[index]


def profile_file(
    path: Path, field_path: str, labels: list[str] | None
) -> tuple[FileProfile | None, list[Problem]]:
    """Stream one JSON Lines file; return its profile, or the problems that make it unusable."""
    problems: list[Problem] = []

    def problem(line_no: int | None, message: str) -> None:
        where = f"{path}:{line_no}" if line_no else str(path)
        problems.append(Problem(field_path, f"{where}: {message}"))

    try:  # a folder on the way without search permission raises here (EACCES)
        exists, regular = path.exists(), path.is_file()
    except OSError as exc:
        problem(None, f"cannot be read: {exc.strerror or exc}")
        return None, problems
    if not exists:
        problem(None, "file does not exist")
        return None, problems
    if not regular:
        problem(None, "is not a regular file")
        return None, problems

    digest = hashlib.sha256()
    label_counts = dict.fromkeys(labels or [], 0)
    input_lengths: list[int] = []
    output_lengths: list[int] = []
    bad_lines = 0
    try:
        with path.open("rb") as handle:
            for line_no, raw in lines(handle):
                digest.update(raw)
                if bad_lines >= MAX_PROBLEMS_PER_FILE:
                    continue
                try:
                    record = check_line(raw, labels, first=line_no == 1)
                except RecordError as exc:
                    problem(line_no, str(exc))
                    bad_lines += 1
                    continue
                if record is None:
                    continue
                if labels is not None:
                    label_counts[record.output] += 1
                input_lengths.append(len(record.input))
                output_lengths.append(len(record.output))
    except OSError as exc:
        problem(None, f"cannot be read: {exc.strerror}")
        return None, problems

    if bad_lines >= MAX_PROBLEMS_PER_FILE:
        problem(None, f"stopped reporting after {MAX_PROBLEMS_PER_FILE} bad lines")
    if problems:
        return None, problems
    if not input_lengths:
        problem(None, "has no examples (empty file)")
        return None, problems

    input_lengths.sort()
    output_lengths.sort()
    return (
        FileProfile(
            path=str(path),
            sha256=digest.hexdigest(),
            examples=len(input_lengths),
            label_counts=label_counts,
            input_chars_p50=int(statistics.median_low(input_lengths)),
            input_chars_p95=_percentile(input_lengths, 0.95),
            input_chars_max=input_lengths[-1],
            output_chars_p50=int(statistics.median_low(output_lengths)),
            output_chars_max=output_lengths[-1],
        ),
        [],
    )


def profile_path(
    path: str, base_dir: Path, field_path: str, labels: list[str] | None
) -> tuple[FileProfile | None, list[Problem]]:
    """Profile the file a spec field names, once its path is known to stay inside."""
    try:
        resolved = resolve_data_path(path, base_dir)
    except DataPathError as exc:
        return None, [Problem(field_path, str(exc))]
    return profile_file(resolved, field_path, labels)


def profile_task(
    task: TaskSpec, index: int, base_dir: Path
) -> tuple[TaskProfile | None, list[Problem]]:
    prefix = f"spec.tasks[{index}].data"
    train, problems = profile_path(task.data.train, base_dir, f"{prefix}.train", task.labels)
    evaluation = None
    if task.data.eval is not None:
        evaluation, eval_problems = profile_path(
            task.data.eval, base_dir, f"{prefix}.eval", task.labels
        )
        problems += eval_problems
    if train is None or problems:
        return None, problems
    return TaskProfile(train=train, eval=evaluation), []


def profile_spec(
    spec: MultiTaskDeploymentSpec, base_dir: Path
) -> tuple[dict[str, TaskProfile], list[Problem]]:
    """Profile every task; the problems of all of them are returned together."""
    profiles: dict[str, TaskProfile] = {}
    problems: list[Problem] = []
    for index, task in enumerate(spec.tasks):
        profile, task_problems = profile_task(task, index, base_dir)
        problems += task_problems
        if profile is not None:
            profiles[task.name] = profile
    return profiles, problems


def profile_compositions(
    spec: MultiTaskDeploymentSpec, base_dir: Path
) -> tuple[dict[str, CompositionProfile], list[Problem]]:
    """Profile every composition's eval and calibration files (problems all together)."""
    profiles: dict[str, CompositionProfile] = {}
    problems: list[Problem] = []
    for index, composition in enumerate(spec.compositions):
        prefix = f"spec.compositions[{index}]"
        files: dict[str, FileProfile | None] = {"eval": None, "calibration": None}
        found: list[Problem] = []
        for key, path, field_path in (
            ("eval", composition.data.eval, f"{prefix}.data.eval"),
            (
                "calibration",
                composition.calibration.data if composition.calibration else None,
                f"{prefix}.calibration.data",
            ),
        ):
            if path is None:
                continue
            files[key], file_problems = profile_path(path, base_dir, field_path, composition.labels)
            found += file_problems
        problems += found
        if not found:
            profiles[composition.name] = CompositionProfile(**files)
    return profiles, problems
