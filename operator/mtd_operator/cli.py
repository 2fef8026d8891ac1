"""`mtd`: the command line of multitask-operator.

Exit codes: 0 success, 2 invalid input (one line per problem on stderr), 1 failure.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .api.crd import crd_yaml
from .core.planner import Plan
from .core.problems import InvalidSpec
from .local.serve import ServingError
from .specfile import load_and_profile

EXIT_INVALID = 2


def _cmd_validate(args: argparse.Namespace) -> int:
    resource, profiles, _ = load_and_profile(Path(args.file))
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


def _cmd_crd(args: argparse.Namespace) -> int:
    sys.stdout.write(crd_yaml())
    return 0


def _serve_forever(process, url: str, out=sys.stdout) -> int:
    out.write(
        f"\nServing at {url} (Ctrl-C stops). Try:\n"
        f"  mtd predict --url {url} --task TASK 'some text'\n"
        f"  curl {url}/catalogue\n"
    )
    out.flush()
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait()
        return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .local.runner import LocalRun, raise_interrupted

    signal.signal(signal.SIGTERM, raise_interrupted)  # stops like Ctrl-C: children first
    from .local.serve import push_adapters, running_server, start_server

    run = LocalRun(Path(args.file), Path(args.workspace))
    print(f"workspace: {run.root}\n{plan_table(run.plan)}")
    decision = run.run_pipeline()
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
    if running_server(url):
        # A server from an earlier run is up: move it to the new adapters in place.
        names = push_adapters(url, run.root / "serving.json")
        run.mark_serving(decision.serving.revision, url)
        print(f"{url} now serves adapters {', '.join(names)} (no restart)")
        _ask_every_task(url, run)
        return 0
    process, url = start_server(run.root / "serving.json", args.host, args.port)
    run.mark_serving(decision.serving.revision, url)
    _ask_every_task(url, run)
    return _serve_forever(process, url)


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
    source = resolve_data_path(data, spec_dir)
    with source.open(encoding="utf-8") as handle:
        example = json.loads(next(line for line in handle if line.strip()))
    prediction = client.predict(name, example["input"])
    text = example["input"].replace("\n", " ")
    answer = prediction.output.replace("\n", " ")
    print(f"  {name} [{prediction.adapter}]: {text[:70]!r}")
    print(f"    → {answer[:100]!r} (expected {example['output'][:60]!r})")


def _cmd_serve(args: argparse.Namespace) -> int:
    from .local.runner import raise_interrupted
    from .local.serve import find_manifest, start_server

    signal.signal(signal.SIGTERM, raise_interrupted)

    process, url = start_server(
        find_manifest(Path(args.workspace), args.name), args.host, args.port
    )
    return _serve_forever(process, url)


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


def _cmd_step(args: argparse.Namespace) -> int:
    from .kube.jobs import run_step

    return run_step(args.verb, Path(args.config), args.result_configmap)


def _cmd_profile(args: argparse.Namespace) -> int:
    from .kube.jobs import run_profile

    return run_profile(Path(args.spec), Path(args.data_dir), args.result_configmap)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtd", description="Train and serve one multi-task LLM in place of many."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check a MultiTaskDeployment and its data")
    validate.add_argument("file", help="YAML file holding one MultiTaskDeployment")
    validate.set_defaults(func=_cmd_validate)

    plan_cmd = commands.add_parser("plan", help="profile the data and print the training plan")
    plan_cmd.add_argument("file")
    plan_cmd.add_argument("-o", "--output", choices=("table", "json"), default="table")
    plan_cmd.set_defaults(func=_cmd_plan)

    run = commands.add_parser(
        "run", help="run the whole pipeline locally (profile, train, evaluate, qualify, serve)"
    )
    run.add_argument("file")
    run.add_argument(
        "--workspace", default="workspace", help="artifacts folder (default: ./workspace)"
    )
    run.add_argument("--no-serve", action="store_true", help="stop once the pipeline is done")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8080)
    run.set_defaults(func=_cmd_run)

    serve = commands.add_parser("serve", help="serve a workspace's trained adapters locally")
    serve.add_argument("--workspace", default="workspace")
    serve.add_argument("--name", help="the deployment, when the workspace holds several")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(func=_cmd_serve)

    predict = commands.add_parser("predict", help="ask a served task (ours or TGI)")
    predict.add_argument("--url", required=True)
    predict.add_argument("--task", required=True)
    predict.add_argument("-o", "--output", choices=("text", "json"), default="text")
    predict.add_argument("text")
    predict.set_defaults(func=_cmd_predict)

    step = commands.add_parser(
        "step", help="(inside a Job) run one trainer step and publish its result"
    )
    step.add_argument("verb", choices=("train", "evaluate", "compose"))
    step.add_argument("--config", required=True)
    step.add_argument("--result-configmap", required=True)
    step.set_defaults(func=_cmd_step)

    profile = commands.add_parser(
        "profile", help="(inside a Job) profile the data files and publish the profiles"
    )
    profile.add_argument("--spec", required=True, help="the resource as YAML")
    profile.add_argument("--data-dir", required=True, help="relative data paths resolve here")
    profile.add_argument("--result-configmap", required=True)
    profile.set_defaults(func=_cmd_profile)

    crd = commands.add_parser("crd", help="print the CustomResourceDefinition")
    crd.set_defaults(func=_cmd_crd)
    return parser


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


if __name__ == "__main__":
    sys.exit(main())
