"""The local driver (`mtd run`): the reconcile core with local processes as children.

Each step runs the very command a Kubernetes Job would run (`python -m mtd_trainer
<verb> --config FILE`), one at a time (a laptop has few cores). What a step produced is
read back from the workspace, so an interrupted or repeated run resumes: a step whose
output is complete is never rerun, and a training run that was killed resumes from its
last checkpoint. Each child runs in its own process group, and an interrupted `mtd run`
(SIGINT, SIGTERM) stops that whole group before it exits, so nothing is left running and
the next run resumes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mtd_contract.catalogue import Catalogue
from mtd_contract.config import EngineScoring, EvalConfig
from mtd_contract.digests import (
    adapter_problem,
    file_digest,
    files_problem,
    folder_problem,
    seal_problem,
)
from mtd_contract.pod import trainer_command
from mtd_contract.results import EvalResult, ResultError, parse_result

from ..api.spec import MultiTaskDeployment
from ..api.status import MultiTaskDeploymentStatus
from ..clock import now_rfc3339
from ..core.catalogue import build_catalogue
from ..core.conditions import Blocked
from ..core.desired import adapter_digests
from ..core.planner import Plan, plan
from ..core.problems import InvalidData, InvalidSpec, Problem
from ..core.reconcile import Decision, ServingObservation, StepState, reconcile
from ..core.render import Locations, evaluable, render_step
from ..core.steps import Step, pipeline_steps
from ..engines.base import adapter_name, scoring_plan
from ..engines.vllm import VLLM
from ..specfile import load_resource, profile_resource
from ..status_view import RESOURCE_FILE, resource_json
from .engine import EngineError, LocalEngine, is_full_model, stop_group
from .lock import pipeline_lock
from .progress import Progress, step_work
from .report import print_status_changes, task_table

STDERR_TAIL_LINES = 20
#: Requests in flight while scoring through the local engine. vLLM's CPU build is slower
#: with more: on the quickstart, 100 movie reviews with their rank-16 adapter took 0.78 s
#: a request at 16 at once, 0.29 s at 4, 0.45 s one at a time (2 cores).
LOCAL_SCORING_CONCURRENCY = 4
STOP_GRACE_S = 10.0


@contextlib.contextmanager
def _closing_quietly(handle: TextIO) -> Iterator[TextIO]:
    """A log file closed at the end without raising: its last flush may meet a full disk,
    which must not hide how the step ended."""
    try:
        yield handle
    finally:
        with contextlib.suppress(OSError):
            handle.close()


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so both stop the same way."""


def raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def children_cpu() -> float:
    """User + system seconds of every waited-for child so far: one step's CPU is the
    difference around it (steps run one at a time), a figure a busy machine does not
    inflate the way it inflates wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def resolve_base_model(uri: str, spec_dir: Path) -> str:
    if uri.startswith("hf://"):
        return uri
    if uri.startswith("pvc://"):
        raise InvalidSpec(
            [
                Problem(
                    "spec.baseModel.uri",
                    f"{uri!r}: pvc:// paths exist only on a cluster; "
                    "locally give a folder path or hf://ORG/NAME",
                )
            ]
        )
    path = Path(uri)
    return str(path if path.is_absolute() else (spec_dir / path).resolve())


def write_text_atomic(path: Path, text: str) -> None:
    """Readers (the gateway follows catalogue.json) never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json_atomic(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


@dataclass
class LocalRun:
    """One `mtd run`: state kept in memory is only what cannot be read back from disk."""

    spec_file: Path
    workspace: Path
    out: TextIO = sys.stdout
    python: str = sys.executable
    failures: dict[str, StepState] = field(default_factory=dict)
    serving: ServingObservation | None = None
    progress: Progress = field(default_factory=Progress)
    #: The vLLM every evaluation scores through and that then serves (local/engine.py).
    #: Given: the caller's, which the caller stops (it may serve on, or score other runs).
    #: None: one of our own on a free port, stopped by `close()`.
    engine: LocalEngine | None = None
    _digests: dict[tuple[str, int, int, int], str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # A file that is no resource has no name, so no folder to write a status in.
        self.resource: MultiTaskDeployment = load_resource(self.spec_file)
        self.spec = self.resource.spec
        self.root = (self.workspace / self.resource.metadata.name).resolve()
        self.status_path = self.root / "status.json"
        self.previous = self._load_previous_status()
        try:
            self.profiles, self.composition_profiles = profile_resource(
                self.resource, self.spec_file, check_base_model=True
            )
            base_model = resolve_base_model(
                self.spec.base_model.uri, self.spec_file.resolve().parent
            )
        except InvalidSpec as exc:
            self._write_blocked(exc)
            raise
        self.plan: Plan = plan(self.spec, self.profiles, self.composition_profiles)
        # The resource this run runs, beside its status, for `mtd status`.
        write_text_atomic(self.root / RESOURCE_FILE, resource_json(self.resource))
        self.locations = Locations(
            root=str(self.root),
            data_dir=str(self.spec_file.resolve().parent),
            base_model=base_model,
        )
        self._owns_engine = self.engine is None
        if self.engine is None:
            self.engine = LocalEngine(self.root)
        if self.engine.process is None and not self.engine.attached:
            # Not running yet: its key and log go beside this run's status. A running one
            # (a caller's, scoring several runs) keeps the key it was started with.
            self.engine.state_dir = self.root
        self.engine.lora_rank = VLLM.max_served_rank(self.spec)
        self.engine.max_model_len = self.spec.serving.max_model_length

    def close(self) -> None:
        """Stop the engine if it is this run's own (see `engine`)."""
        if self.engine is not None and self._owns_engine:
            self.engine.stop()

    def __enter__(self) -> LocalRun:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def engine_model(self) -> str:
        """The base model as the engine names it (an hf:// id without its scheme)."""
        return self.locations.base_model.removeprefix("hf://")

    def _write_blocked(self, exc: InvalidSpec) -> None:
        """status.json says why nothing runs, as the operator's status would."""
        if isinstance(exc, InvalidData):
            blocked = Blocked.invalid_data("; ".join(map(str, exc.problems)))
        else:
            blocked = Blocked.invalid_spec(exc.problems)
        previous = self.previous.conditions if self.previous else None
        status = blocked.status(previous, None, now_rfc3339())
        write_json_atomic(self.status_path, status.to_api())

    def _load_previous_status(self) -> MultiTaskDeploymentStatus | None:
        if not self.status_path.exists():
            return None
        try:
            return MultiTaskDeploymentStatus.model_validate_json(self.status_path.read_text())
        except ValueError:
            return None  # a status file is derived data: rebuild it

    # Observation -----------------------------------------------------------------

    def observe(self, steps: list[Step]) -> dict[str, StepState]:
        observed: dict[str, StepState] = {}
        for step in steps:
            if step.key in self.failures:
                observed[step.key] = self.failures[step.key]
                continue
            done_file = self.root / step.result_path
            if done_file.exists():
                problem, result = self._check_artifact(step, done_file)
                if problem is not None:
                    self._set_aside(step, problem)  # the step runs again, from scratch
                    continue
                observed[step.key] = StepState("Succeeded", result=result, attempts=1)
        return observed

    def _check_artifact(self, step: Step, done_file: Path) -> tuple[str | None, Any]:
        """Why a finished step's output cannot be reused (None: it can), and its result:
        the result must be as the trainer wrote it (its own digest), every file it records
        unchanged, and an evaluation's scored adapters still the files it scored."""
        try:
            raw = json.loads(done_file.read_text(encoding="utf-8"))
        except (ValueError, RecursionError, OSError):
            return f"{done_file}: the result file is not valid JSON", None
        problem = seal_problem(raw) if isinstance(raw, dict) else "not a JSON object"
        if problem is not None:
            return f"{done_file}: {problem}", None
        try:
            result = parse_result(step.verb, raw)
        except ResultError as exc:
            return f"{done_file}: {exc}", None
        if step.verb != "evaluate" and not result.files:
            return f"{done_file}: it records no files for its artifact", None
        problem = files_problem(done_file.parent, result.files, self._digest)
        if problem is None and isinstance(result, EvalResult):
            for folder, expected in result.scored.items():
                changed = folder_problem(done_file.parent / folder, expected, self._digest)
                if changed is not None:
                    problem = f"its scores describe other files than are there now ({changed})"
                    break
        return problem, result.model_dump(mode="json")

    def _digest(self, path: Path) -> str:
        """A file's sha256, computed once per version of the file this run sees (observing
        runs every loop; a full model is hundreds of MB)."""
        info = path.stat()
        key = (str(path), info.st_ino, info.st_size, info.st_mtime_ns)
        if key not in self._digests:
            self._digests[key] = file_digest(path)
        return self._digests[key]

    def _set_aside(self, step: Step, problem: str) -> None:
        """Move a damaged output out of the way (kept, never deleted) and say so."""
        output = self.root / step.output
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        aside = output.with_name(f"{output.name}.damaged-{stamp}")
        output.rename(aside)
        self.out.write(f"⚠ {step.key}: cannot be reused, rebuilding ({problem}); kept at {aside}\n")
        self.out.flush()

    def decide(self) -> Decision:
        decision = reconcile(
            self.spec,
            self.plan,
            self.observe(pipeline_steps(self.plan)),
            self.serving,
            previous=self.previous.conditions if self.previous else None,
            now=now_rfc3339(),
        )
        serving = decision.status.serving
        if serving is not None:
            # Locally the real vLLM serves whatever the spec's engine (TGI cannot run
            # here) and loads new adapters at run time: the status says what serves.
            serving.engine, serving.adapter_update = "vllm", "RuntimeLoad"
        write_json_atomic(self.status_path, decision.status.to_api())
        print_status_changes(self.previous, decision.status, self.out, self.spec)
        self.previous = decision.status
        return decision

    # Running a step --------------------------------------------------------------

    def run_step(self, step: Step, decision: Decision) -> None:
        by_key = {s.key: s for s in decision.steps}
        config = render_step(
            step, self.spec, self.plan, by_key, self.locations, self.resource.metadata.name
        )
        if isinstance(config, EvalConfig):
            try:
                config = self.through_engine(config)
            except Exception as exc:  # the engine would not start or take an adapter
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                self.failures[step.key] = StepState("Failed", message=message, attempts=1)
                self.out.write(f"✘ {step.key}: {exc}\n")
                self.out.flush()
                return
        config_path = self.root / step.config_path
        write_json_atomic(config_path, config.model_dump(mode="json"))
        log_path = self.root / "logs" / f"{step.key}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = trainer_command(self.python, step.verb, str(config_path))
        self.out.write(self._progress_line(step, decision) + f": {' '.join(command[1:])}\n")
        self.out.flush()
        started, cpu_before = time.monotonic(), children_cpu()
        tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
        # Line-buffered: a step killed with `mtd run` (SIGTERM, SIGHUP) keeps its log.
        with _closing_quietly(log_path.open("a", encoding="utf-8", buffering=1)) as log:
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
                bufsize=1,
                start_new_session=True,  # its own process group: stopped as a whole
            )
            assert process.stdout is not None
            pump = threading.Thread(
                target=self._pump, args=(process.stdout, log, tail), daemon=True
            )
            pump.start()
            try:
                code = process.wait()
            except BaseException:
                stop_group(process, STOP_GRACE_S)
                pump.join(timeout=STOP_GRACE_S)
                self.out.write(f"■ {step.key} stopped; the next run resumes it\n")
                self.out.flush()
                raise
            pump.join()
        elapsed, cpu = time.monotonic() - started, children_cpu() - cpu_before
        self.progress.finished(step.key, elapsed)
        if code == 0:
            self.out.write(f"✔ {step.key} ({elapsed:.0f}s, {cpu:.0f} CPU-s)\n")
        else:
            message = (tail[-1] if tail else f"exit code {code}").strip()
            self.failures[step.key] = StepState("Failed", message=message, attempts=1)
            self.out.write(
                f"✘ {step.key} failed after {elapsed:.0f}s (log: {log_path}): {message}\n"
            )
        self.out.flush()

    def through_engine(self, config: EvalConfig) -> EvalConfig:
        """The eval config scored through the engine: the step's adapters loaded into it
        by name (a fully fine-tuned model is the engine's model instead)."""
        assert self.engine is not None
        scored = scoring_plan(config, self.engine_model, is_full_model)
        if scored.model != self.engine_model:  # a fully fine-tuned model: checked as one
            model = self._recorded_digests({"model": scored.model}).get("model")
            problem = adapter_problem(scored.model, model)
            if problem is not None:
                raise EngineError(f"model refused: {problem}; `mtd run` rebuilds it")
        self.engine.ensure(scored.model)
        self.engine.load(scored.adapters, self._recorded_digests(scored.adapters))
        scoring = EngineScoring(
            url=self.engine.url,
            base_model=scored.model,
            adapters=scored.names,
            api_key_file=str(self.engine.key_file),
            concurrency=LOCAL_SCORING_CONCURRENCY,
        )
        return config.model_copy(update={"engine": scoring})

    def _recorded_digests(self, folders: dict[str, str]) -> dict[str, str]:
        """Name → the digest its step recorded, for artifact folders (name → absolute
        path) of this deployment's finished training and composition steps."""
        steps = [s for s in pipeline_steps(self.plan) if s.verb != "evaluate"]
        prefix = self.locations.artifact("")
        relative = {n: p.removeprefix(prefix) for n, p in folders.items() if p.startswith(prefix)}
        return adapter_digests(relative, steps, self.observe(steps))

    def _progress_line(self, step: Step, decision: Decision) -> str:
        """Which step starts, how many of the pipeline's are done, the time left."""
        by_key = {s.key: s for s in decision.steps}
        steps = [s for s in decision.steps if evaluable(s, self.spec, self.plan)]
        observed = self.observe(steps)
        remaining = [s for s in steps if s.key not in observed]
        for pending in remaining:
            if pending.key not in self.progress.work:
                config = render_step(
                    pending,
                    self.spec,
                    self.plan,
                    by_key,
                    self.locations,
                    self.resource.metadata.name,
                )
                self.progress.work[pending.key] = step_work(
                    config.model_dump(mode="json"), self._eval_examples()
                )
        done = len(steps) - len(remaining)
        return self.progress.line(step.key, done, len(steps), [s.key for s in remaining])

    def _eval_examples(self) -> dict[str, int]:
        """Eval set size of every task and composition that has one (from the profiles)."""
        profiles = {**self.profiles, **self.composition_profiles}
        return {
            name: profile.eval.examples
            for name, profile in profiles.items()
            if profile.eval is not None
        }

    def _pump(self, stream: TextIO, log: TextIO, tail: deque[str]) -> None:
        """Copy the step's output to its log and to `out` until it ends. A log that can no
        longer be written (a full disk) is said once and left; the pipe is drained to the
        end all the same, or the step would block on a full pipe and never finish."""
        logging = True
        for line in stream:
            tail.append(line)
            if logging:
                try:
                    log.write(line)
                except OSError as exc:
                    logging = False
                    self._say(f"  (the step's log is no longer written: {exc}; output goes on)\n")
            self._say("  " + line if not line.startswith("\r") else line)

    def _say(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # a closed or full terminal/file
            self.out.write(text)
            self.out.flush()

    # Serving -----------------------------------------------------------------------

    def serving_manifest(self, decision: Decision) -> dict[str, Any]:
        """What `mtd serve` starts: the engine's model and its adapters under the names the
        catalogue gives them (vLLM's: the name plus a hash of the folder)."""
        assert decision.serving is not None
        full = decision.serving.model is not None  # the fine-tuned model, no adapters
        # Folders of the workspace are relative to this file's folder (a copied or moved
        # workspace serves its own); `read_manifest` resolves them.
        model = decision.serving.model if full else self.engine_model
        return {
            "revision": decision.serving.revision,
            "engine": "vllm",
            "baseModel": model,
            # What the engine starts with (`mtd serve` has no spec to read them from).
            "maxModelLength": self.spec.serving.max_model_length,
            "loraRank": VLLM.max_served_rank(self.spec),
            **({"modelId": decision.serving.model_name} if full else {}),
            "adapters": {
                self._served_names(decision)[name]: path
                for name, path in decision.serving.adapters.items()
            },
            # What each served folder must hash to (`mtd serve` refuses anything else).
            "digests": {
                model if full else self._served_names(decision)[name]: digest
                for name, digest in decision.serving.digests.items()
            },
            "catalogue": json.loads(self.catalogue(decision).to_json()),
        }

    def _served_names(self, decision: Decision) -> dict[str, str]:
        assert decision.serving is not None
        return {
            name: adapter_name(self.locations.artifact(path), name)
            for name, path in decision.serving.adapters.items()
        }

    def catalogue(self, decision: Decision) -> Catalogue:
        """The document the operator writes to the resource's catalogue ConfigMap, with
        the adapters under the names this engine serves them by."""
        assert decision.serving is not None
        catalogue = build_catalogue(self.spec, decision.status, decision.serving.revision)
        catalogue = catalogue.served(decision.serving.digests, decision.serving.prompt_format)
        return catalogue.renamed(self._served_names(decision))

    def run_pipeline(self) -> Decision:
        """Run steps until nothing more can start; returns the last decision. Raises
        WorkspaceBusy while another process runs this workspace's pipeline."""
        with pipeline_lock(self.root):
            while True:
                decision = self.decide()
                if not decision.start:
                    break
                # Training first: evaluations then run back to back on one engine, and no
                # training step shares the CPU with it.
                step = min(decision.start, key=lambda s: s.verb == "evaluate")
                self.run_step(step, decision)
            if decision.serving is not None:
                write_json_atomic(self.root / "serving.json", self.serving_manifest(decision))
                catalogue = self.catalogue(decision).to_json()
                write_text_atomic(self.root / "catalogue.json", catalogue)
            return decision

    def mark_stopped(self, reason: str) -> None:
        """Serving and Ready False with `reason` once this process no longer serves, so
        status.json never names a URL that does not answer. Best effort: the process is
        ending, and a full disk must not hide why."""
        self.serving = ServingObservation(revision=None, ready=False, message=reason, stopped=True)
        try:
            self.decide()
        except OSError as exc:
            self.out.write(f"status.json not updated ({exc}); it still says Serving\n")

    def mark_serving(self, revision: str, endpoint: str) -> Decision:
        self.serving = ServingObservation(
            revision=revision, ready=True, ready_replicas=1, endpoint=endpoint
        )
        decision = self.decide()
        self.out.write(task_table(decision.status, self.spec) + "\n")
        return decision
