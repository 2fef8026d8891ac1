"""`mtd`: the command line of multitask-operator. It only parses arguments: each command's
`_cmd_*` hands them to the one function, in the module where the command runs, that does
it (tests/contract/test_cli_only_parses.py holds it to that).

Exit codes: 0 success, 2 invalid input (one line per problem on stderr), 1 failure
(exit_codes.py turns a command's exception into its code).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .exit_codes import run_command

# Each command imports its module only when it runs: no command pays for another's
# imports (the Kubernetes client, yaml, the gateway's server, the hub client).


def _cmd_validate(args: argparse.Namespace) -> int:
    from .spec_commands import validate

    return validate(args.file, args.set)


def _cmd_plan(args: argparse.Namespace) -> int:
    from .spec_commands import print_plan

    return print_plan(args.file, args.output)


def _cmd_manifests(args: argparse.Namespace) -> int:
    from .spec_commands import print_manifests

    return print_manifests(args.file, args.set, args.namespace)


def _cmd_crd(args: argparse.Namespace) -> int:
    from .spec_commands import print_crd

    return print_crd()


def _cmd_run(args: argparse.Namespace) -> int:
    from .local.pipeline import run_and_serve

    return run_and_serve(
        Path(args.file),
        Path(args.workspace),
        args.host,
        args.port,
        args.engine_port,
        serve=not args.no_serve,
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    from .local.serve import serve_workspace

    return serve_workspace(Path(args.workspace), args.name, args.host, args.port, args.engine_port)


def _cmd_status(args: argparse.Namespace) -> int:
    from .status_view import status_command

    return status_command(Path(args.workspace), args.name, args.kube, args.namespace)


def _cmd_predict(args: argparse.Namespace) -> int:
    from .local.asking import predict

    return predict(args.url, args.task, args.text, args.output)


def _cmd_gateway(args: argparse.Namespace) -> int:
    from .gateway.command import run_gateway

    return run_gateway(
        args.catalogue, args.upstream, args.engine, args.base_model, args.host, args.port
    )


def _cmd_step(args: argparse.Namespace) -> int:
    from .pod.jobs import step_command

    return step_command(
        args.verb,
        Path(args.config),
        args.result_configmap,
        args.processes,
        args.nnodes,
        args.rdzv_endpoint,
        args.rdzv_id,
    )


def _cmd_profile(args: argparse.Namespace) -> int:
    from .pod.jobs import profile_command

    return profile_command(
        Path(args.spec),
        Path(args.data_dir),
        args.result_configmap,
        args.download_model,
        args.model_dir,
    )


def _cmd_verify(args: argparse.Namespace) -> int:
    from .pod.verify import verify

    return verify(Path(args.digests) if args.digests else None, args.pairs)


def _add_address(command: argparse.ArgumentParser) -> None:
    """Where `mtd run` and `mtd serve` listen: the gateway, and the engine behind it."""
    command.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    command.add_argument("--port", type=int, default=8080, help="the task gateway's port")
    command.add_argument("--engine-port", type=int, help="the engine's port (default: --port + 1)")


# argparse's subparsers object has no public type name.
Commands = Any


def _add_local_commands(commands: Commands) -> None:
    """validate, plan, run, serve, predict, status: what a person runs on a laptop."""
    validate = commands.add_parser("validate", help="check a MultiTaskDeployment and its data")
    validate.add_argument("file", help="YAML file holding one MultiTaskDeployment")
    validate.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a chart value the operator will run with, e.g. serving.gpus=4 (TGI's "
        "smallest servable LoRA rank grows with it)",
    )
    validate.set_defaults(func=_cmd_validate)

    plan_cmd = commands.add_parser("plan", help="profile the data and print the training plan")
    plan_cmd.add_argument("file", help="YAML file holding one MultiTaskDeployment")
    plan_cmd.add_argument(
        "-o", "--output", choices=("table", "json"), default="table", help="the plan's format"
    )
    plan_cmd.set_defaults(func=_cmd_plan)

    run = commands.add_parser(
        "run", help="run the whole pipeline locally (profile, train, evaluate, qualify, serve)"
    )
    run.add_argument("file", help="YAML file holding one MultiTaskDeployment")
    run.add_argument(
        "--workspace", default="workspace", help="artifacts folder (default: ./workspace)"
    )
    run.add_argument("--no-serve", action="store_true", help="stop once the pipeline is done")
    _add_address(run)
    run.set_defaults(func=_cmd_run)

    serve = commands.add_parser("serve", help="serve a workspace's trained adapters locally")
    serve.add_argument(
        "--workspace", default="workspace", help="artifacts folder (default: ./workspace)"
    )
    serve.add_argument("--name", help="the deployment, when the workspace holds several")
    _add_address(serve)
    serve.set_defaults(func=_cmd_serve)

    predict = commands.add_parser("predict", help="ask a served task through the task gateway")
    predict.add_argument("--url", required=True, help="the gateway's (or an engine's) URL")
    predict.add_argument("--task", required=True, help="the task's name")
    predict.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="the answer's format"
    )
    predict.add_argument("text", help="the input to answer")
    predict.set_defaults(func=_cmd_predict)

    status = commands.add_parser(
        "status",
        help="print a deployment's conditions and task table (a workspace, or the cluster)",
    )
    status.add_argument("name", nargs="?", help="the deployment (default: the only one)")
    status.add_argument(
        "--workspace", default="workspace", help="the local workspace (default: ./workspace)"
    )
    status.add_argument(
        "--kube", action="store_true", help="read the resource from the cluster (kubeconfig)"
    )
    status.add_argument(
        "-n", "--namespace", help="with --kube: the namespace (default: the context's)"
    )
    status.set_defaults(func=_cmd_status)


def _add_gateway_command(commands: Commands) -> None:
    gateway = commands.add_parser(
        "gateway", help="serve tasks by name in front of a vLLM or TGI server"
    )
    gateway.add_argument("--upstream", required=True, help="the engine's URL")
    gateway.add_argument("--catalogue", required=True, help="catalogue JSON (re-read on change)")
    gateway.add_argument(
        "--engine",
        choices=("tgi", "vllm"),
        help="the upstream's engine (default: ask it on first use)",
    )
    gateway.add_argument("--base-model", help="vLLM's base model id (default: from /v1/models)")
    gateway.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    gateway.add_argument("--port", type=int, default=8000, help="the port to listen on")
    gateway.set_defaults(func=_cmd_gateway)


def _add_job_commands(commands: Commands) -> None:
    """step, profile: the commands the operator's Jobs run."""
    step = commands.add_parser(
        "step", help="(inside a Job) run one trainer step and publish its result"
    )
    step.add_argument("verb", choices=("train", "evaluate", "compose"), help="the step's kind")
    step.add_argument("--config", required=True, help="the step's config (JSON)")
    step.add_argument(
        "--result-configmap", required=True, help="the ConfigMap to publish the result in"
    )
    step.add_argument(
        "--processes", type=int, default=1, help="data-parallel trainer processes (torchrun)"
    )
    step.add_argument(
        "--nnodes", type=int, default=1, help="pods of the step; rank from JOB_COMPLETION_INDEX"
    )
    step.add_argument("--rdzv-endpoint", default="", help="HOST:PORT of pod 0 (c10d)")
    step.add_argument("--rdzv-id", default="mtd", help="rendezvous id shared by the pods")
    step.set_defaults(func=_cmd_step)

    profile = commands.add_parser(
        "profile", help="(inside a Job) profile the data files and publish the profiles"
    )
    profile.add_argument("--spec", required=True, help="the resource as YAML")
    profile.add_argument("--data-dir", required=True, help="relative data paths resolve here")
    profile.add_argument(
        "--result-configmap", required=True, help="the ConfigMap to publish the profiles in"
    )
    profile.add_argument("--download-model", help="hf://ORG/NAME to download first")
    profile.add_argument("--model-dir", help="where to (on the workspace volume)")
    profile.set_defaults(func=_cmd_profile)

    verify = commands.add_parser(
        "verify",
        help="(serving pods' init container) refuse folders that differ from their digests",
    )
    verify.add_argument("--digests", help="a JSON file of folder → sha256 folder digest")
    verify.add_argument("pairs", nargs="*", metavar="FOLDER=DIGEST", help="more folders")
    verify.set_defaults(func=_cmd_verify)


def _add_cluster_commands(commands: Commands) -> None:
    """manifests, crd: what the operator would create, without a cluster."""
    manifests = commands.add_parser(
        "manifests",
        help="print every object the operator would create for this resource (YAML)",
        description="Every Job and ConfigMap of the whole pipeline and the serving objects "
        "as they will be once every step has succeeded, built as the operator builds them. "
        "The operator's configuration comes from the MTD_* variables the chart sets, and "
        "--set under the chart's value names.",
    )
    manifests.add_argument("file", help="YAML file holding one MultiTaskDeployment")
    manifests.add_argument(
        "-n", "--namespace", help="the resource's namespace (default: its own, or default)"
    )
    manifests.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a chart value, e.g. trainer.gpus=2, serving.gpus=2, trainer.image=REF, "
        "workspace.claim=NAME",
    )
    manifests.set_defaults(func=_cmd_manifests)

    crd = commands.add_parser("crd", help="print the CustomResourceDefinition")
    crd.set_defaults(func=_cmd_crd)


def _version() -> str:
    """The installed distribution's version (pyproject.toml's)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("multitask-operator")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtd", description="Train and serve one multi-task LLM in place of many."
    )
    parser.add_argument("--version", action="version", version=f"mtd {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_local_commands(commands)
    _add_gateway_command(commands)
    _add_job_commands(commands)
    _add_cluster_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
