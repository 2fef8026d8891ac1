"""What runs inside the operator's Job pods: `mtd step` and `mtd profile`.

`mtd step` runs the trainer command exactly as `mtd run` does locally, then publishes the
trainer's result to a ConfigMap the operator reads. `mtd profile` profiles the data on
the workspace volume and publishes the profiles (or the problems, in the termination
message, so the resource's status can say what is wrong with the data).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
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


def trainer_command(verb: str, config_path: Path, processes: int, python: str) -> list[str]:
    """The trainer command; with several processes, torchrun runs them data-parallel (one
    per GPU; gloo on a CPU-only host)."""
    trainer = ["-m", "mtd_trainer", verb, "--config", str(config_path)]
    if processes <= 1:
        return [python, *trainer]
    # --standalone: a one-node rendezvous on a free local port (a pod is one node).
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    return [python, *launcher, *trainer]


def run_step(
    verb: str,
    config_path: Path,
    result_name: str,
    python: str = sys.executable,
    processes: int = 1,
) -> int:
    config = json.loads(config_path.read_text(encoding="utf-8"))
    code = subprocess.call(trainer_command(verb, config_path, processes, python))
    if code != 0:
        return code
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
