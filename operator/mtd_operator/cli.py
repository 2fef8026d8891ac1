"""`mtd`: the command line of multitask-operator.

Exit codes: 0 success, 2 invalid input (one line per problem on stderr), 1 failure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mtd_contract.quantization import NF4, nf4_error

from .api.crd import crd_yaml
from .api.spec import MultiTaskDeployment
from .core.planner import Plan
from .core.problems import InvalidSpec
from .local.serve import ServingError
from .specfile import load_and_profile

EXIT_INVALID = 2


def _has_cuda() -> bool:
    """Whether this machine has a CUDA device torch can use (no torch: no)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _cluster_problems(resource: MultiTaskDeployment, settings: list[str], paths: bool) -> int:
    """Print what the spec asks that a cluster run with the chart values `settings` cannot
    do (TGI's rank floor depends on serving.gpus; with `paths`, a model path off the
    workspace volume, which is fine for `mtd run`); EXIT_INVALID if any, else 0."""
    import os

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


def _cmd_validate(args: argparse.Namespace) -> int:
    resource, profiles, _ = load_and_profile(Path(args.file), check_base_model=True)
    if _cluster_problems(resource, args.set, paths=False):
        return EXIT_INVALID
    if resource.spec.training.quantization == NF4:
        # Only here, on the machine that will run it; a cluster's node is unknown to the
        # operator, so there the trainer exits 2 naming the field (docs/trainer.md).
        problem = nf4_error("training.quantization", _has_cuda())
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return EXIT_INVALID
    examples = sum(p.train_examples for p in profiles.values())
    compositions = len(resource.spec.compositions)
    print(
        f"{args.file}: valid MultiTaskDeployment {resource.metadata.name!r}: "
        f"{len(resource.spec.tasks)} tasks, {examples} training examples"
        + (f", {compositions} compositions" if compositions else "")
    )
    return 0


def plan_table(plan: Plan) -> str:
    rows = [("GROUP", "STAGE", "HASH", "STEPS", "SAMPLING", "TASK", "RATE")]
    for group in plan.groups:
        for stage in group.stages:
            sampling = stage.sampling
            label = sampling.strategy
            if sampling.strategy == "temperature":
                label += f" τ={sampling.temperature:g} K={sampling.dataset_cap}"
            for index, task in enumerate(stage.tasks):
                first = index == 0
                rows.append(
                    (
                        group.name if first else "",
                        stage.name if first else "",
                        stage.hash if first else "",
                        str(stage.max_steps) if first else "",
                        label if first else "",
                        task,
                        f"{sampling.rates[task]:.4f}",
                    )
                )
    for baseline in plan.baselines:
        rows.append(
            (
                "baseline",
                "single-task",
                baseline.hash,
                str(baseline.max_steps),
                "",
                baseline.task,
                "1.0000",
            )
        )
    for composition in plan.compositions:
        for index, task in enumerate(composition.tasks):
            first = index == 0
            rows.append(
                (
                    "composition" if first else "",
                    composition.name if first else "",
                    composition.hash if first else "",
                    "",
                    "merge" if first else "",
                    task,
                    "",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) + f"\nplan {plan.hash}"


def _cmd_plan(args: argparse.Namespace) -> int:
    from .core.planner import plan

    resource, profiles, compositions = load_and_profile(Path(args.file))
    result = plan(resource.spec, profiles, compositions)
    if args.output == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(plan_table(result))
    return 0


def _cmd_manifests(args: argparse.Namespace) -> int:
    import os

    import yaml

    from .kube.manifests import operator_config, pipeline_objects

    try:
        config = operator_config(os.environ, args.set)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    resource, profiles, compositions = load_and_profile(Path(args.file))
    if _cluster_problems(resource, args.set, paths=True):
        return EXIT_INVALID
    namespace = args.namespace or resource.metadata.namespace or "default"
    objects = pipeline_objects(resource, profiles, compositions, config, namespace)
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False))
    return 0


def _cmd_crd(args: argparse.Namespace) -> int:
    sys.stdout.write(crd_yaml())
    return 0


def _serve_forever(engine, url: str, out=sys.stdout) -> int:
    """Wait on the engine; Ctrl-C, SIGTERM or SIGHUP stop it with us (stop_on_signals)."""
    out.write(
        f"\nServing at {url} (the task gateway; Ctrl-C stops). Try:\n"
        f"  mtd predict --url {url} --task TASK 'some text'\n"
        f"  curl {url}/tasks\n"
        f"The vLLM engine behind it: {engine.url} (API key in {engine.key_file})\n"
    )
    out.flush()
    try:
        if engine.process is None:  # an earlier command's engine: serve until stopped
            threading.Event().wait()
        assert engine.process is not None
        code = engine.process.wait()
        print(f"the engine exited with code {code}; log: {engine.log_file}", file=sys.stderr)
        return code or 1
    except KeyboardInterrupt:
        return 0
    finally:
        engine.stop()


def _local_engine(args: argparse.Namespace, root: Path):
    from .local.engine import LocalEngine

    return LocalEngine(root, host=args.host, port=args.engine_port or args.port + 1)


def _cmd_run(args: argparse.Namespace) -> int:
    from .local.lock import WorkspaceBusy
    from .local.runner import LocalRun, raise_interrupted
    from .local.serve import start_serving, stop_on_signals

    signal.signal(signal.SIGTERM, raise_interrupted)  # stops like Ctrl-C: children first
    # The engine evaluates every step and then serves; it needs its port from the start.
    engine = _local_engine(args, Path())
    run = LocalRun(Path(args.file), Path(args.workspace), engine=engine)
    with engine, stop_on_signals():
        print(f"workspace: {run.root}\n{plan_table(run.plan)}")
        try:
            decision = run.run_pipeline()
        except WorkspaceBusy as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_INVALID
        if decision.failed:
            print("pipeline failed: see the Trained/Evaluated conditions above", file=sys.stderr)
            return 1
        if decision.serving is None:
            return 1
        if args.no_serve:
            from .local.report import task_table

            print(task_table(decision.status, run.spec))
            return 0
        url = f"http://{args.host}:{args.port}"
        manifest = run.root / "serving.json"
        from .local.serve import read_manifest

        if engine.process is None and not engine.attached:  # nothing was evaluated now
            engine.attach(read_manifest(manifest)["baseModel"])
        if engine.attached:
            # An earlier `mtd run`/`mtd serve` of this workspace serves: its engine now holds
            # the new adapters, and its gateway follows catalogue.json, rewritten just now.
            served = read_manifest(manifest)
            engine.load(served["adapters"], served.get("digests"))
            run.mark_serving(decision.serving.revision, url)
            print(f"{engine.url} now serves the new adapters too (no restart)")
            _ask_every_task(url, run)
            return 0
        _server, url = start_serving(manifest, engine, args.host, args.port)
        run.mark_serving(decision.serving.revision, url)
        reason = "mtd run ended"
        try:
            _ask_every_task(url, run)
            code = _serve_forever(engine, url)
            reason = "mtd run stopped" if code == 0 else f"the engine exited with code {code}"
            return code
        except BaseException as exc:
            reason = f"mtd run failed while serving: {type(exc).__name__}: {exc}"
            raise
        finally:
            run.mark_stopped(reason)  # status.json: no longer Serving at that URL


def _ask_every_task(url: str, run) -> None:
    """One real query per task (its first eval example), so a run ends with proof."""
    from .client import MultiTaskClient
    from .core.profile import resolve_data_path

    print("\nOne query per task and composition:")
    with MultiTaskClient(url) as client:
        for task in run.spec.tasks:
            source = task.data.eval or task.data.train
            _ask_one(client, task.name, source, run.spec_file.resolve().parent, resolve_data_path)
        for composition in run.spec.compositions:
            source = composition.data.eval or (
                composition.calibration.data if composition.calibration else None
            )
            if source is None:
                print(f"  {composition.name}: no compositional example to ask (no data)")
                continue
            spec_dir = run.spec_file.resolve().parent
            _ask_one(client, composition.name, source, spec_dir, resolve_data_path)


def _ask_one(client, name: str, data: str, spec_dir: Path, resolve_data_path) -> None:
    from .client import ClientError

    try:
        _ask(client, name, data, spec_dir, resolve_data_path)
    except ClientError as exc:
        print(f"  {name}: error: {exc}")


def _ask(client, name: str, data: str, spec_dir: Path, resolve_data_path) -> None:
    from mtd_contract.records import Record, iter_records

    # The first record as the trainer reads it (a byte order mark, blank lines allowed).
    source = resolve_data_path(data, spec_dir)
    example = next((r for _, r in iter_records(source, None) if isinstance(r, Record)), None)
    if example is None:
        print(f"  {name}: no example to ask in {data}")
        return
    prediction = client.predict(name, example.input)
    text = example.input.replace("\n", " ")
    answer = prediction.output.replace("\n", " ")
    print(f"  {name} [{prediction.adapter}]: {text[:70]!r}")
    print(f"    → {answer[:100]!r} (expected {example.output[:60]!r})")


def _cmd_serve(args: argparse.Namespace) -> int:
    from .local.serve import find_manifest, start_serving, stop_on_signals

    manifest = find_manifest(Path(args.workspace), args.name)
    engine = _local_engine(args, manifest.parent)
    with engine, stop_on_signals():
        _server, url = start_serving(manifest, engine, args.host, args.port)
        return _serve_forever(engine, url)


def _cmd_status(args: argparse.Namespace) -> int:
    from .status_view import StatusNotFound, cluster_status, local_status, render

    try:
        if args.kube:
            from kubernetes import client, config

            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api = client.CustomObjectsApi()
            seen = cluster_status(api, args.namespace or _kube_namespace(), args.name)
        else:
            seen = local_status(Path(args.workspace), args.name)
    except StatusNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(render(seen))
    return 0


def _kube_namespace() -> str:
    """The current context's namespace, as kubectl picks it (default: `default`)."""
    from kubernetes import config

    try:
        _, context = config.list_kube_config_contexts()
    except (config.ConfigException, OSError):
        return "default"
    return (context or {}).get("context", {}).get("namespace") or "default"


def _cmd_predict(args: argparse.Namespace) -> int:
    from .client import ClientError, MultiTaskClient

    try:
        with MultiTaskClient(args.url) as client:
            prediction = client.predict(args.task, args.text)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(prediction.to_json()))
    else:
        score = "-" if prediction.score is None else f"{prediction.score:.3f}"
        print(f"{prediction.output}\t(score {score}, adapter {prediction.adapter})")
    return 0


def _cmd_gateway(args: argparse.Namespace) -> int:
    import os

    from .gateway.app import build_gateway, serve
    from .kube.builders import GATEWAY_KEY_ENV

    if not Path(args.catalogue).is_file():
        print(f"error: --catalogue {args.catalogue}: no such file", file=sys.stderr)
        return EXIT_INVALID
    gateway = build_gateway(
        args.catalogue,
        args.upstream,
        args.engine,
        args.base_model,
        api_key=os.environ.get(GATEWAY_KEY_ENV) or None,  # from the resource's Secret
    )
    serve(gateway, args.host, args.port)
    return 0


def _cmd_step(args: argparse.Namespace) -> int:
    from .pod.jobs import rendezvous_from_env, run_step

    rendezvous = None
    if args.nnodes > 1:
        if not args.rdzv_endpoint:
            print("error: --nnodes > 1 needs --rdzv-endpoint HOST:PORT", file=sys.stderr)
            return 2
        try:
            rendezvous = rendezvous_from_env(args.nnodes, args.rdzv_endpoint, args.rdzv_id)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return run_step(
        args.verb,
        Path(args.config),
        args.result_configmap,
        processes=args.processes,
        rendezvous=rendezvous,
    )


def _cmd_profile(args: argparse.Namespace) -> int:
    from .pod.jobs import run_profile

    if args.download_model:
        from .pod.download import DownloadError, download_model

        if not args.model_dir:
            print("error: --download-model needs --model-dir", file=sys.stderr)
            return 2
        try:
            download_model(args.download_model, Path(args.model_dir))
        except DownloadError as exc:
            from mtd_contract.exits import write_termination

            write_termination(str(exc))  # what the operator reports as the Job's failure
            print(exc, file=sys.stderr)
            return 2
        print(f"{args.download_model} is in {args.model_dir}")
    return run_profile(Path(args.spec), Path(args.data_dir), args.result_configmap)


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


def _stdout_closed() -> int:
    """The reader of our output left (`mtd plan | head`): stop quietly, as `cat` does.

    Python would report the pipe again when it flushes stdout at exit; pointing stdout at
    /dev/null first is the remedy the Python docs give (library/signal, "Note on SIGPIPE").
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except InvalidSpec as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_INVALID
    except ServingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc or 'SIGINT'}): rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _stdout_closed()
    except (MemoryError, RecursionError) as exc:  # the parsers bound this; a last guard
        print(f"error: the input is too large or too deeply nested ({exc!r})", file=sys.stderr)
        return EXIT_INVALID
    except Exception as exc:  # a bug or a system failure: one line, never a traceback
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
