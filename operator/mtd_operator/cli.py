"""`mtd`: the command line of multitask-operator.

Exit codes: 0 success, 2 invalid input (one line per problem on stderr), 1 failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .api.crd import crd_yaml
from .core.planner import Plan
from .core.problems import InvalidSpec
from .specfile import load_and_profile

EXIT_INVALID = 2


def _cmd_validate(args: argparse.Namespace) -> int:
    resource, profiles = load_and_profile(Path(args.file))
    examples = sum(p.train_examples for p in profiles.values())
    print(
        f"{args.file}: valid MultiTaskDeployment {resource.metadata.name!r}: "
        f"{len(resource.spec.tasks)} tasks, {examples} training examples"
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
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) + f"\nplan {plan.hash}"


def _cmd_plan(args: argparse.Namespace) -> int:
    from .core.planner import plan

    resource, profiles = load_and_profile(Path(args.file))
    result = plan(resource.spec, profiles)
    if args.output == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(plan_table(result))
    return 0


def _cmd_crd(args: argparse.Namespace) -> int:
    sys.stdout.write(crd_yaml())
    return 0


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
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
