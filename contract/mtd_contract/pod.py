"""The commands the operator runs in its Job pods (the in-pod entrypoint), built once here.

Every Job runs the `mtd` console script of this project's wheel, in the trainer image:

* `mtd profile --spec FILE --data-dir DIR --result-configmap NAME`: profile the data files
  (the rule of `records.py`) and publish the profiles;
* `mtd step VERB --config FILE --result-configmap NAME`: run `python -m mtd_trainer VERB
  --config FILE` (a config of `config.py`), then publish its result (`results.py`).

Publishing writes a ConfigMap through the Kubernetes API, so the image needs the
`kubernetes` client as well as the trainer: `images.py` lists every module each image
must import, and the trainer extra in pyproject.toml declares them.
"""

from __future__ import annotations

from collections.abc import Sequence

STEP_VERBS: dict[str, str] = {
    "train": "run one training stage (or a single-task baseline)",
    "evaluate": "score every task of a group",
    "compose": "merge task adapters (and calibrate) into one adapter",
}
PROFILE = "profile"
ENTRYPOINT = "mtd"
TRAINER_MODULE = "mtd_trainer"
TORCHRUN_MODULE = "torch.distributed.run"  # what `torchrun` runs; no script needed on PATH


def trainer_command(python: str, verb: str, config: str, processes: int = 1) -> list[str]:
    """The trainer's own command, as `mtd step` (in a pod) and `mtd run` (locally) start it.

    With several processes, torchrun runs them data-parallel (one per GPU; gloo on a
    CPU-only host), `--standalone`: a one-node rendezvous on a free local port (a pod is
    one node).
    """
    if verb not in STEP_VERBS:
        raise ValueError(f"verb {verb!r} is unknown; allowed: {', '.join(STEP_VERBS)}")
    trainer = ["-m", TRAINER_MODULE, verb, "--config", config]
    if processes <= 1:
        return [python, *trainer]
    launcher = ["-m", TORCHRUN_MODULE, "--standalone", "--nproc-per-node", str(processes)]
    return [python, *launcher, *trainer]


def step_command(verb: str, config: str, result_configmap: str, processes: int = 1) -> list[str]:
    if verb not in STEP_VERBS:
        raise ValueError(f"verb {verb!r} is unknown; allowed: {', '.join(STEP_VERBS)}")
    command = [ENTRYPOINT, "step", verb, "--config", config, "--result-configmap", result_configmap]
    return command + (["--processes", str(processes)] if processes > 1 else [])


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


def command_verb(command: Sequence[str]) -> str | None:
    """`profile` or the step verb of a command built here; None for anything else."""
    parts = list(command)
    if parts[:2] == [ENTRYPOINT, PROFILE]:
        return PROFILE
    if parts[:2] == [ENTRYPOINT, "step"] and len(parts) > 2 and parts[2] in STEP_VERBS:
        return parts[2]
    return None
