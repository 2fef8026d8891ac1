"""What runs inside the operator's Job pods: `mtd step` and `mtd profile`.

`mtd step` runs the trainer command exactly as `mtd run` does locally, then publishes the
trainer's result to a ConfigMap the operator reads. `mtd profile` profiles the data on
the workspace volume and publishes the profiles (or the problems, in the termination
message, so the resource's status can say what is wrong with the data).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.problems import InvalidSpec
from ..core.profile import profile_compositions, profile_spec
from ..specfile import load_resource
from .results import write_result

TERMINATION_LOG = Path("/dev/termination-log")
TERMINATION_LIMIT = 4000


def termination_log() -> Path | None:
    import os

    path = Path(os.environ.get("TERMINATION_MESSAGE_PATH", str(TERMINATION_LOG)))
    return path if path.parent.exists() else None


def _terminate_with(message: str) -> None:
    path = termination_log()
    if path is not None:
        with contextlib.suppress(OSError):
            path.write_text(message[:TERMINATION_LIMIT], encoding="utf-8")


def _step_result(verb: str, config: dict[str, Any]) -> dict[str, Any]:
    if verb in ("train", "compose"):
        path = Path(config["output_dir"]) / "result.json"
    else:
        path = Path(config["output_path"])
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Nodes:
    """A multi-node step: how many pods, this pod's rank, and where they rendezvous."""

    count: int
    rank: int
    endpoint: str  # host:port of pod 0 (torchrun's c10d rendezvous store)
    run_id: str

    @classmethod
    def from_env(cls, count: int, endpoint: str, run_id: str) -> Nodes:
        """This pod's rank is the Indexed Job's JOB_COMPLETION_INDEX."""
        raw = os.environ.get("JOB_COMPLETION_INDEX", "")
        if not raw.isdigit() or int(raw) >= count:
            raise ValueError(
                f"JOB_COMPLETION_INDEX: {raw!r} is not a node rank in 0..{count - 1}; "
                "a multi-node step runs as an Indexed Job"
            )
        return cls(count, int(raw), endpoint, run_id)


def trainer_command(
    verb: str, config_path: Path, processes: int, python: str, nodes: Nodes | None = None
) -> list[str]:
    """The trainer command; with several processes, torchrun runs them data-parallel (one
    per GPU; gloo on a CPU-only host); with several nodes, every pod runs torchrun and
    they meet at a c10d rendezvous on pod 0."""
    trainer = ["-m", "mtd_trainer", verb, "--config", str(config_path)]
    if nodes is None or nodes.count <= 1:
        if processes <= 1:
            return [python, *trainer]
        # --standalone: a one-node rendezvous on a free local port (a pod is one node).
        launcher = ["-m", "torch.distributed.run", "--standalone"]
        return [python, *launcher, "--nproc-per-node", str(processes), *trainer]
    launcher = [
        "-m", "torch.distributed.run",
        "--nnodes", str(nodes.count),
        "--node-rank", str(nodes.rank),
        "--nproc-per-node", str(processes),
        "--rdzv-backend", "c10d",
        "--rdzv-endpoint", nodes.endpoint,
        "--rdzv-id", nodes.run_id,
        # One failed rank fails the attempt on every pod; the Job's retry restarts them
        # all and the trainer resumes from its last checkpoint.
        "--max-restarts", "0",
    ]  # fmt: skip
    return [python, *launcher, *trainer]


def run_step(
    verb: str,
    config_path: Path,
    result_name: str,
    python: str = sys.executable,
    processes: int = 1,
    nodes: Nodes | None = None,
) -> int:
    config = json.loads(config_path.read_text(encoding="utf-8"))
    code = subprocess.call(trainer_command(verb, config_path, processes, python, nodes))
    if code != 0:
        return code
    if nodes is None or nodes.rank == 0:  # the trainer's main process wrote the output
        write_result(result_name, _step_result(verb, config))
    return 0


def run_profile(spec_path: Path, data_dir: Path, result_name: str) -> int:
    try:
        resource = load_resource(spec_path)
    except InvalidSpec as exc:
        _terminate_with("\n".join(str(p) for p in exc.problems))
        print(exc, file=sys.stderr)
        return 2
    profiles, problems = profile_spec(resource.spec, data_dir)
    compositions, composition_problems = profile_compositions(resource.spec, data_dir)
    problems += composition_problems
    if problems:
        message = "\n".join(str(p) for p in problems)
        _terminate_with(message)
        print(message, file=sys.stderr)
        return 2
    write_result(
        result_name,
        {
            "profiles": {name: profile.to_json() for name, profile in profiles.items()},
            "compositions": {name: p.to_json() for name, p in compositions.items()},
        },
    )
    print(f"profiled {len(profiles)} tasks")
    return 0
