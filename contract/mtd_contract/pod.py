"""The commands the operator runs in its Job pods (the in-pod entrypoint), built once here.

Every Job runs the `mtd` console script of this project's wheel, in the trainer image:

* `mtd profile --spec FILE --data-dir DIR --result-configmap NAME`: profile the data files
  (the rule of `records.py`) and publish the profiles;
* `mtd step VERB --config FILE --result-configmap NAME`: run `python -m mtd_trainer VERB
  --config FILE` (a config of `config.py`), then publish its result (`results.py`);
* `mtd verify [--digests FILE] [FOLDER=DIGEST ...]`: (the serving pods' init container)
  refuse to start the engine on a folder that differs from its recorded digest.

Publishing writes a ConfigMap through the Kubernetes API, so the image needs the
`kubernetes` client as well as the trainer: `images.py` lists every module each image
must import, and the trainer extra in pyproject.toml declares them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

STEP_VERBS: dict[str, str] = {
    "train": "run one training stage (or a single-task baseline)",
    "evaluate": "score every task of a group",
    "compose": "merge task adapters (and calibrate) into one adapter",
}
PROFILE = "profile"
VERIFY = "verify"
ENTRYPOINT = "mtd"
TRAINER_MODULE = "mtd_trainer"
TORCHRUN_MODULE = "torch.distributed.run"  # what `torchrun` runs; no script needed on PATH


@dataclass(frozen=True)
class Rendezvous:
    """A multi-node step: how many pods, this pod's rank, and where they meet (torchrun's
    c10d store on pod 0)."""

    nodes: int
    rank: int
    endpoint: str  # host:port of pod 0
    run_id: str


def trainer_command(
    python: str,
    verb: str,
    config: str,
    processes: int = 1,
    rendezvous: Rendezvous | None = None,
) -> list[str]:
    """The trainer's own command, as `mtd step` (in a pod) and `mtd run` (locally) start it.

    With several processes, torchrun runs them data-parallel (one per GPU; gloo on a
    CPU-only host): `--standalone`, a one-node rendezvous on a free local port, when the
    step is one pod; with several pods, every pod runs torchrun and they meet at a c10d
    rendezvous on pod 0.
    """
    if verb not in STEP_VERBS:
        raise ValueError(f"verb {verb!r} is unknown; allowed: {', '.join(STEP_VERBS)}")
    trainer = ["-m", TRAINER_MODULE, verb, "--config", config]
    if rendezvous is None or rendezvous.nodes <= 1:
        if processes <= 1:
            return [python, *trainer]
        launcher = ["-m", TORCHRUN_MODULE, "--standalone", "--nproc-per-node", str(processes)]
        return [python, *launcher, *trainer]
    launcher = [
        "-m", TORCHRUN_MODULE,
        "--nnodes", str(rendezvous.nodes),
        "--node-rank", str(rendezvous.rank),
        "--nproc-per-node", str(processes),
        "--rdzv-backend", "c10d",
        "--rdzv-endpoint", rendezvous.endpoint,
        "--rdzv-id", rendezvous.run_id,
        # One failed rank fails every pod (their workers lose a peer); the Job controller
        # replaces each failed index, the replacements meet at a new rendezvous under the
        # same id (tests/trainer/test_rendezvous_rejoin.py), and the trainer resumes from
        # its last checkpoint.
        "--max-restarts", "0",
    ]  # fmt: skip
    return [python, *launcher, *trainer]


def step_command(
    verb: str,
    config: str,
    result_configmap: str,
    processes: int = 1,
    nodes: int = 1,
    rendezvous_endpoint: str = "",
    rendezvous_id: str = "",
) -> list[str]:
    """`mtd step`; a multi-node step's pods learn their rank from JOB_COMPLETION_INDEX."""
    if verb not in STEP_VERBS:
        raise ValueError(f"verb {verb!r} is unknown; allowed: {', '.join(STEP_VERBS)}")
    command = [ENTRYPOINT, "step", verb, "--config", config, "--result-configmap", result_configmap]
    command += ["--processes", str(processes)] if processes > 1 else []
    if nodes > 1:
        command += [
            "--nnodes", str(nodes),
            "--rdzv-endpoint", rendezvous_endpoint,
            "--rdzv-id", rendezvous_id,
        ]  # fmt: skip
    return command


def profile_command(
    spec: str,
    data_dir: str,
    result_configmap: str,
    download_model: str | None = None,
    model_dir: str | None = None,
) -> list[str]:
    """`download_model` (hf://ORG/NAME): fetch the base model into `model_dir` on the
    workspace volume first, once for every later pod."""
    command = [
        ENTRYPOINT, PROFILE,
        "--spec", spec,
        "--data-dir", data_dir,
        "--result-configmap", result_configmap,
    ]  # fmt: skip
    if download_model is not None:
        if model_dir is None:
            raise ValueError("download_model needs model_dir")
        command += ["--download-model", download_model, "--model-dir", model_dir]
    return command


def verify_command(digests_file: str | None = None, pairs: Sequence[str] = ()) -> list[str]:
    """`mtd verify`: the serving pods' init container checks every folder the engine will
    serve against its recorded digest (a JSON file of folder → digest, or FOLDER=DIGEST)."""
    command = [ENTRYPOINT, VERIFY]
    if digests_file is not None:
        command += ["--digests", digests_file]
    return [*command, *pairs]


def command_verb(command: Sequence[str]) -> str | None:
    """`profile`, `verify` or the step verb of a command built here; None for anything
    else."""
    parts = list(command)
    if parts[:2] in ([ENTRYPOINT, PROFILE], [ENTRYPOINT, VERIFY]):
        return parts[1]
    if parts[:2] == [ENTRYPOINT, "step"] and len(parts) > 2 and parts[2] in STEP_VERBS:
        return parts[2]
    return None
