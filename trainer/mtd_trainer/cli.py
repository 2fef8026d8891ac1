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
import os
import sys
from pathlib import Path
from typing import Any

from .config import ComposeConfig, ConfigError, EvalConfig, TrainConfig, load_config
from .errors import InputError
from .quiet import silence_known_warnings
from .threads import configure_threads

log = logging.getLogger("mtd_trainer")

TERMINATION_LOG = Path("/dev/termination-log")
TERMINATION_LIMIT = 4096  # bytes Kubernetes keeps of a termination message


def default_termination_log() -> Path | None:
    if TERMINATION_LOG.exists() and os.access(TERMINATION_LOG, os.W_OK):
        return TERMINATION_LOG
    return None


def report(path: Path | None, payload: dict[str, Any]) -> None:
    """Write a compact JSON payload to the termination log, trimmed to what k8s keeps."""
    if path is None:
        return
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > TERMINATION_LIMIT:
        text = json.dumps({"truncated": True, "error": payload.get("error", "")[:3000]})
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        log.warning("could not write the termination log %s: %s", path, exc)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mtd_trainer", description="Train or evaluate a multi-task LLM."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    for verb, help_text in (
        ("train", "run one training stage (or a single-task baseline)"),
        ("evaluate", "score every task of a group"),
        ("compose", "merge task adapters (and calibrate) into one adapter"),
    ):
        sub = verbs.add_parser(verb, help=help_text)
        sub.add_argument("--config", required=True, help="the JSON config file")
        sub.add_argument(
            "--termination-log",
            type=Path,
            default=default_termination_log(),
            help="where to write the small result JSON (default: /dev/termination-log "
            "when it exists and is writable)",
        )
    return parser.parse_args(argv)


def run(verb: str, config_path: str) -> dict[str, Any]:
    """Run one verb; returns the compact summary for the termination log."""
    config = load_config(config_path, default_kind=verb)
    if verb != config.kind:
        raise ConfigError(f"{config_path}: kind: {config.kind!r} config given to {verb!r}")
    import datasets  # heavy imports only once the config is valid

    datasets.disable_progress_bars()  # one progress bar: training's
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
        return 2
    except Exception as exc:
        log.exception("%s failed", args.verb)
        report(args.termination_log, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    report(args.termination_log, summary)
    print(json.dumps(summary, sort_keys=True))
    return 0
