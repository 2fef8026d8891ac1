"""`python -m mtd_trainer.serving --base-model DIR --adapter name=DIR ...`: serve locally.

The same `name=/path` form as TGI's LORA_ADAPTERS, so a workspace's adapter list can be
handed to either server unchanged.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..quiet import silence_known_warnings
from ..threads import configure_threads
from .limits import Limits

#: The `Limits` fields that are flags, with their help.
LIMIT_FLAGS = {
    "max_body_bytes": "largest request body; more gets 413 (TGI's payload limit)",
    "max_labels": "labels one /classify request may score",
    "max_label_chars": "characters of one /classify label",
    "max_concurrent_requests": "requests running the model at once; more get 429",
}


def adapter_pair(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {value!r}")
    return name, path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mtd_trainer.serving", description=__doc__)
    p.add_argument("--base-model", required=True, help="the base model folder")
    p.add_argument(
        "--adapter",
        action="append",
        type=adapter_pair,
        default=[],
        metavar="NAME=DIR",
        help="a peft adapter folder served as NAME (repeat for each adapter)",
    )
    p.add_argument("--catalogue", help="task catalogue JSON served at /catalogue and in /info")
    p.add_argument("--model-id", help="the base model's name in /info (default: the folder)")
    p.add_argument("--max-input-tokens", type=int, help="longest prompt accepted")
    p.add_argument("--max-total-tokens", type=int, help="longest prompt + generation")
    defaults = Limits()
    for name, help_text in LIMIT_FLAGS.items():
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            default=getattr(defaults, name),
            help=f"{help_text} (default: %(default)s)",
        )
    p.add_argument(
        "--admin-token-file",
        help="bearer token for POST /adapters: read from this file, or generated and written "
        "to it (mode 0600) when it does not exist; without it adapters cannot be changed",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--log-level", default="info")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    silence_known_warnings()
    configure_threads()  # before torch is imported: OpenMP reads its settings once
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    adapters = dict(args.adapter)
    if len(adapters) != len(args.adapter):
        print("error: an adapter name is given twice", file=sys.stderr)
        return 2
    from .app import serve
    from .catalogue import CatalogueError
    from .engine import EngineError

    try:
        limits = Limits(**{name: getattr(args, name) for name in LIMIT_FLAGS})
        serve(
            args.base_model,
            adapters,
            catalogue=args.catalogue,
            host=args.host,
            port=args.port,
            model_id=args.model_id,
            max_input_tokens=args.max_input_tokens,
            max_total_tokens=args.max_total_tokens,
            log_level=args.log_level,
            limits=limits,
            admin_token_file=args.admin_token_file,
        )
    except (EngineError, CatalogueError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
