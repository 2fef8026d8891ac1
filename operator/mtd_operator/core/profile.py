"""Data profiling: each data file's JSON Lines checked, counted and fingerprinted.

The planner needs example counts (high/low resource, sampling rates) and a content
fingerprint (stage hashes change when data changes). Profiling takes the lines one at a
time, so memory does not grow with a file's size, and reports every bad line it finds
(up to a limit) with its file and line number.

The core reads no file: a driver (`data_files.py`, in process for `mtd run`, inside the
profiling Job for `mtd profile`) resolves the paths `task_files`/`composition_files`
name, streams each file's lines into a `FileProfiler`, and hands the results to
`task_profiles`/`composition_profiles`.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from mtd_contract.records import RecordError, check_line

from ..api.spec import CompositionSpec, MultiTaskDeploymentSpec, TaskSpec
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


#: A profiled file: its profile, or the problems that make it unusable.
FileResult = tuple[FileProfile | None, list[Problem]]


def _percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    index = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[index]


class FileProfiler:
    """One data file's profile, built from its lines as the driver reads them: `add`
    each (line number, raw bytes) that `mtd_contract.records.lines` yields, then `result`.
    A driver that cannot read the file reports why with `problem`."""

    def __init__(self, source: str, field_path: str, labels: list[str] | None) -> None:
        self.source = source  # the file as problems and the profile name it
        self.field_path = field_path
        self.labels = labels
        self.problems: list[Problem] = []
        self._digest = hashlib.sha256()
        self._label_counts = dict.fromkeys(labels or [], 0)
        self._inputs: list[int] = []
        self._outputs: list[int] = []
        self._bad_lines = 0

    def problem(self, line_no: int | None, message: str) -> None:
        where = f"{self.source}:{line_no}" if line_no else self.source
        self.problems.append(Problem(self.field_path, f"{where}: {message}"))

    def add(self, line_no: int, raw: bytes) -> None:
        """One line: hashed always, checked until MAX_PROBLEMS_PER_FILE lines were bad."""
        self._digest.update(raw)
        if self._bad_lines >= MAX_PROBLEMS_PER_FILE:
            return
        try:
            record = check_line(raw, self.labels, first=line_no == 1)
        except RecordError as exc:
            self.problem(line_no, str(exc))
            self._bad_lines += 1
            return
        if record is None:
            return
        if self.labels is not None:
            self._label_counts[record.output] += 1
        self._inputs.append(len(record.input))
        self._outputs.append(len(record.output))

    def result(self) -> FileResult:
        """The profile once every line was added, or every problem found."""
        if self._bad_lines >= MAX_PROBLEMS_PER_FILE:
            self.problem(None, f"stopped reporting after {MAX_PROBLEMS_PER_FILE} bad lines")
        if self.problems:
            return None, self.problems
        if not self._inputs:
            self.problem(None, "has no examples (empty file)")
            return None, self.problems
        inputs, outputs = sorted(self._inputs), sorted(self._outputs)
        return (
            FileProfile(
                path=self.source,
                sha256=self._digest.hexdigest(),
                examples=len(inputs),
                label_counts=self._label_counts,
                input_chars_p50=int(statistics.median_low(inputs)),
                input_chars_p95=_percentile(inputs, 0.95),
                input_chars_max=inputs[-1],
                output_chars_p50=int(statistics.median_low(outputs)),
                output_chars_max=outputs[-1],
            ),
            [],
        )


@dataclass(frozen=True)
class DataFile:
    """A data file a spec names: `role` in its task or composition, the spec field that
    names it (problems point there), the path as written, and the labels its records
    must use (None: generation)."""

    role: str
    field_path: str
    path: str
    labels: list[str] | None


def _of_task(index: int, task: TaskSpec) -> list[DataFile]:
    prefix = f"spec.tasks[{index}].data"
    files = [DataFile("train", f"{prefix}.train", task.data.train, task.labels)]
    if task.data.eval is not None:
        files.append(DataFile("eval", f"{prefix}.eval", task.data.eval, task.labels))
    return files


def _of_composition(index: int, composition: CompositionSpec) -> list[DataFile]:
    prefix = f"spec.compositions[{index}]"
    files = []
    if composition.data.eval is not None:
        files.append(
            DataFile("eval", f"{prefix}.data.eval", composition.data.eval, composition.labels)
        )
    if composition.calibration is not None:
        files.append(
            DataFile(
                "calibration",
                f"{prefix}.calibration.data",
                composition.calibration.data,
                composition.labels,
            )
        )
    return files


def task_files(spec: MultiTaskDeploymentSpec) -> list[DataFile]:
    """Every task's data files, in the order their problems are reported."""
    return [file for index, task in enumerate(spec.tasks) for file in _of_task(index, task)]


def composition_files(spec: MultiTaskDeploymentSpec) -> list[DataFile]:
    """Every composition's eval and calibration files, in the order of their problems."""
    return [
        file
        for index, composition in enumerate(spec.compositions)
        for file in _of_composition(index, composition)
    ]


def _collect(
    files: list[DataFile], results: Mapping[str, FileResult]
) -> tuple[dict[str, FileProfile | None], list[Problem]]:
    """Role → profile of one task's (or composition's) files, and their problems."""
    profiles: dict[str, FileProfile | None] = {}
    problems: list[Problem] = []
    for file in files:
        profiles[file.role], found = results[file.field_path]
        problems += found
    return profiles, problems


def task_profiles(
    spec: MultiTaskDeploymentSpec, results: Mapping[str, FileResult]
) -> tuple[dict[str, TaskProfile], list[Problem]]:
    """Every task's profile from its files' `results` (by field path; `task_files`); the
    problems of all of them are returned together."""
    profiles: dict[str, TaskProfile] = {}
    problems: list[Problem] = []
    for index, task in enumerate(spec.tasks):
        files, found = _collect(_of_task(index, task), results)
        problems += found
        train = files["train"]
        if train is not None and not found:
            profiles[task.name] = TaskProfile(train=train, eval=files.get("eval"))
    return profiles, problems


def composition_profiles(
    spec: MultiTaskDeploymentSpec, results: Mapping[str, FileResult]
) -> tuple[dict[str, CompositionProfile], list[Problem]]:
    """Every composition's profile from its files' `results` (`composition_files`)."""
    profiles: dict[str, CompositionProfile] = {}
    problems: list[Problem] = []
    for index, composition in enumerate(spec.compositions):
        files, found = _collect(_of_composition(index, composition), results)
        problems += found
        if not found:
            profiles[composition.name] = CompositionProfile(**files)
    return profiles, problems
