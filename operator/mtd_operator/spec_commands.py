"""`mtd validate`, `plan`, `manifests` and `crd`: what a spec means, said on the machine
that holds it, without training, serving or a cluster.

Each takes the spec file as given on the command line (the messages quote it so) and
returns the command's exit code: 0, or EXIT_INVALID (2) with one `error:` line per
problem on stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mtd_contract.exits import EXIT_INVALID
from mtd_contract.quantization import NF4, nf4_error

from .api.crd import crd_yaml
from .api.spec import MultiTaskDeployment
from .local.report import plan_table
from .specfile import load_and_profile


def has_cuda() -> bool:
    """Whether this machine has a CUDA device torch can use (no torch: no)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def cluster_problems(resource: MultiTaskDeployment, settings: list[str], paths: bool) -> int:
    """Print what the spec asks that a cluster run with the chart values `settings` cannot
    do (TGI's rank floor depends on serving.gpus; with `paths`, a model path off the
    workspace volume, which is fine for `mtd run`); EXIT_INVALID if any, else 0."""
    from .kube.builders import cluster_problems
    from .kube.manifests import operator_config

    try:
        config = operator_config(os.environ, settings)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    problems = cluster_problems(resource.spec, config, model_path=paths)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_INVALID if problems else 0


def validate(file: str, settings: list[str]) -> int:
    """`mtd validate`: the spec, its data and its base model, as a run here and a cluster
    with the chart values `settings` would take them."""
    resource, profiles, _ = load_and_profile(Path(file), check_base_model=True)
    if cluster_problems(resource, settings, paths=False):
        return EXIT_INVALID
    if resource.spec.training.quantization == NF4:
        # Only here, on the machine that will run it; a cluster's node is unknown to the
        # operator, so there the trainer exits 2 naming the field (docs/trainer.md).
        problem = nf4_error("training.quantization", has_cuda())
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return EXIT_INVALID
    examples = sum(p.train_examples for p in profiles.values())
    compositions = len(resource.spec.compositions)
    print(
        f"{file}: valid MultiTaskDeployment {resource.metadata.name!r}: "
        f"{len(resource.spec.tasks)} tasks, {examples} training examples"
        + (f", {compositions} compositions" if compositions else "")
    )
    return 0


def print_plan(file: str, output: str) -> int:
    """`mtd plan`: profile the data and print the plan (`table` or `json`)."""
    from .core.planner import plan

    resource, profiles, compositions = load_and_profile(Path(file))
    result = plan(resource.spec, profiles, compositions)
    if output == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(plan_table(result))
    return 0


def print_manifests(file: str, settings: list[str], namespace: str | None) -> int:
    """`mtd manifests`: every object the operator would create for the resource, as YAML,
    with the operator's configuration from the MTD_* variables and `settings`."""
    import yaml

    from .kube.manifests import operator_config, pipeline_objects

    try:
        config = operator_config(os.environ, settings)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    resource, profiles, compositions = load_and_profile(Path(file))
    if cluster_problems(resource, settings, paths=True):
        return EXIT_INVALID
    namespace = namespace or resource.metadata.namespace or "default"
    objects = pipeline_objects(resource, profiles, compositions, config, namespace)
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False))
    return 0


def print_crd() -> int:
    """`mtd crd`: the CustomResourceDefinition, as YAML."""
    sys.stdout.write(crd_yaml())
    return 0
