"""What runs inside the operator's Job pods: `mtd step` and `mtd profile` (mtd_contract.pod).

`mtd step` runs the trainer command exactly as `mtd run` does locally, checks the result
it wrote against the contract (`mtd_contract.results`) and publishes it to a ConfigMap
the operator reads. `mtd profile` profiles the data on the workspace volume and publishes
the profiles, or puts the problems in the termination message (exit 2: bad input fails
the Job at once), so the resource's status can say what is wrong with the data.
These run in the trainer image: they import nothing of kopf, and the trainer only as a
subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mtd_contract.config import ConfigError, load_config
from mtd_contract.exits import EXIT_FAILED, EXIT_INVALID, EXIT_OK, write_termination
from mtd_contract.pod import Rendezvous, trainer_command
from mtd_contract.results import ProfileResult, ResultError, parse_result, result_file

from ..core.problems import InvalidSpec
from ..data_files import profile_compositions, profile_spec
from ..result_parts import ResultTooLarge
from ..specfile import load_resource
from .publish import write_result


def _publish(result_name: str, payload: dict) -> int:
    """Publish, or fail for good (exit 2: a retry would build the same result) when it
    is too large for the ConfigMaps the operator reads."""
    try:
        write_result(result_name, payload)
    except ResultTooLarge as exc:
        return _fail(EXIT_INVALID, f"{result_name}: {exc}")
    return EXIT_OK


def _fail(code: int, message: str) -> int:
    write_termination(message)
    print(f"error: {message}", file=sys.stderr)
    return code


def rendezvous_from_env(nodes: int, endpoint: str, run_id: str) -> Rendezvous:
    """This pod's place in a multi-node step: its rank is the Indexed Job's
    JOB_COMPLETION_INDEX."""
    raw = os.environ.get("JOB_COMPLETION_INDEX", "")
    if not raw.isdigit() or int(raw) >= nodes:
        raise ValueError(
            f"JOB_COMPLETION_INDEX: {raw!r} is not a node rank in 0..{nodes - 1}; "
            "a multi-node step runs as an Indexed Job"
        )
    return Rendezvous(nodes, int(raw), endpoint, run_id)


def run_step(
    verb: str,
    config_path: Path,
    result_name: str,
    python: str = sys.executable,
    processes: int = 1,
    rendezvous: Rendezvous | None = None,
) -> int:
    try:
        config = load_config(config_path, default_kind=verb)
    except ConfigError as exc:
        return _fail(EXIT_INVALID, str(exc))
    code = subprocess.call(trainer_command(python, verb, str(config_path), processes, rendezvous))
    if code != EXIT_OK:
        return code  # the trainer wrote its own termination message
    path = result_file(config)
    try:
        result = parse_result(verb, json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ResultError) as exc:
        return _fail(EXIT_FAILED, f"{path}: the trainer's result is unusable: {exc}")
    if rendezvous is None or rendezvous.rank == 0:  # rank 0's main process wrote the output
        return _publish(result_name, result.model_dump(mode="json"))
    return EXIT_OK


def step_command(
    verb: str,
    config_path: Path,
    result_name: str,
    processes: int,
    nodes: int,
    endpoint: str,
    run_id: str,
) -> int:
    """`mtd step`: one step on this pod, of `nodes` pods rendezvousing at `endpoint`."""
    rendezvous = None
    if nodes > 1:
        if not endpoint:
            print("error: --nnodes > 1 needs --rdzv-endpoint HOST:PORT", file=sys.stderr)
            return EXIT_INVALID
        try:
            rendezvous = rendezvous_from_env(nodes, endpoint, run_id)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_INVALID
    return run_step(verb, config_path, result_name, processes=processes, rendezvous=rendezvous)


def profile_command(
    spec_path: Path,
    data_dir: Path,
    result_name: str,
    download: str | None,
    model_dir: str | None,
) -> int:
    """`mtd profile`: the hub model `download` (hf://ORG/NAME) copied into `model_dir`
    first if asked, then the data profiled and published."""
    if download:
        from .download import DownloadError, download_model

        if not model_dir:
            print("error: --download-model needs --model-dir", file=sys.stderr)
            return EXIT_INVALID
        try:
            download_model(download, Path(model_dir))
        except DownloadError as exc:
            write_termination(str(exc))  # what the operator reports as the Job's failure
            print(exc, file=sys.stderr)
            return EXIT_INVALID
        print(f"{download} is in {model_dir}")
    return run_profile(spec_path, data_dir, result_name)


def run_profile(spec_path: Path, data_dir: Path, result_name: str) -> int:
    try:
        resource = load_resource(spec_path)
    except InvalidSpec as exc:
        return _fail(EXIT_INVALID, "\n".join(str(p) for p in exc.problems))
    profiles, problems = profile_spec(resource.spec, data_dir)
    compositions, composition_problems = profile_compositions(resource.spec, data_dir)
    problems += composition_problems
    if problems:
        return _fail(EXIT_INVALID, "\n".join(str(p) for p in problems))
    result = ProfileResult(
        profiles={name: profile.to_json() for name, profile in profiles.items()},
        compositions={name: p.to_json() for name, p in compositions.items()},
    )
    code = _publish(result_name, result.model_dump(mode="json"))
    if code == EXIT_OK:
        print(f"profiled {len(profiles)} tasks")
    return code
