"""The command a Job (or `mtd run`) starts: parse, run, report, exit with a meaningful code.

Exit codes: 0 done; 2 the input is wrong (config, data, model or adapter; a one-line
message naming the file and line or the field, no traceback; retrying cannot help);
1 anything else. The result (or the error) also goes to the Kubernetes termination log,
where the operator can read it back from the Pod status.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from mtd_contract.config import ComposeConfig, ConfigError, EvalConfig, TrainConfig, load_config
from mtd_contract.exits import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    TERMINATION_LIMIT,
    fit_termination,
    termination_log,
)
from mtd_contract.pod import STEP_VERBS

from .errors import InputError
from .quiet import silence_known_warnings
from .threads import configure_threads

log = logging.getLogger("mtd_trainer")


def report(path: Path | None, payload: dict[str, Any]) -> None:
    """Write a compact JSON payload to the termination log, trimmed to what k8s keeps."""
    if path is None:
        return
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > TERMINATION_LIMIT:
        text = json.dumps({"truncated": True, "error": payload.get("error", "")[:3000]})
    try:
        path.write_text(fit_termination(text), encoding="utf-8")
    except OSError as exc:
        log.warning("could not write the termination log %s: %s", path, exc)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mtd_trainer", description="Train or evaluate a multi-task LLM."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    for verb, help_text in STEP_VERBS.items():
        sub = verbs.add_parser(verb, help=help_text)
        sub.add_argument("--config", required=True, help="the JSON config file")
        sub.add_argument(
            "--termination-log",
            type=Path,
            default=termination_log(),
            help="where to write the small result JSON (default: $TERMINATION_MESSAGE_PATH, else "
            "/dev/termination-log when it exists and is writable)",
        )
    return parser.parse_args(argv)


def cache_dir(config: TrainConfig | EvalConfig | ComposeConfig) -> Path:
    """The step's cache folder: `.cache` in its output folder (in the workspace)."""
    if isinstance(config, EvalConfig):
        return Path(config.output_path).parent / ".cache"
    return Path(config.output_dir) / ".cache"


def run(verb: str, config_path: str) -> dict[str, Any]:
    """Run one verb; returns the compact summary for the termination log."""
    config = load_config(config_path, default_kind=verb)
    if verb != config.kind:
        raise ConfigError(f"{config_path}: kind: {config.kind!r} config given to {verb!r}")
    import datasets  # heavy imports only once the config is valid

    datasets.disable_progress_bars()  # one progress bar: training's
    # Caches live in the workspace, beside the step's output: never in ~/.cache, which is
    # another user's home locally and a read-only root filesystem in a pod. Set on the
    # module (read at each build), so it holds however `datasets` was imported.
    datasets.config.HF_DATASETS_CACHE = cache_dir(config) / "datasets"
    if isinstance(config, TrainConfig):
        from .training import train

        return train(config) or {}
    if isinstance(config, ComposeConfig):
        from .compose import compose

        return compose(config)
    assert isinstance(config, EvalConfig)
    from .evaluation import evaluate

    results = evaluate(config)
    return {
        "tasks": {name: row["score"] for name, row in results["tasks"].items()},
        "output": config.output_path,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    silence_known_warnings()
    threads = configure_threads()  # before torch is imported: it reads the environment once
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log.info("%d CPU threads (mtd_trainer.threads)", threads)
    try:
        summary = run(args.verb, args.config)
    except (ConfigError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        report(args.termination_log, {"error": str(exc)})
        return EXIT_INVALID
    except Exception as exc:
        log.exception("%s failed", args.verb)
        report(args.termination_log, {"error": f"{type(exc).__name__}: {exc}"})
        return EXIT_FAILED
    report(args.termination_log, summary)
    print(json.dumps(summary, sort_keys=True))
    return EXIT_OK
