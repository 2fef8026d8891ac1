"""How a `mtd` command's exception becomes its exit code: one line on stderr, never a
traceback. 0 success, 2 invalid input (one line per problem), 1 failure (the codes of
mtd_contract.exits), 130 interrupted (a rerun resumes)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from mtd_contract.exits import EXIT_FAILED, EXIT_INVALID

from .core.problems import InvalidSpec
from .local.serve import ServingError

EXIT_INTERRUPTED = 130


def _stdout_closed() -> int:
    """The reader of our output left (`mtd plan | head`): stop quietly, as `cat` does.

    Python would report the pipe again when it flushes stdout at exit; pointing stdout at
    /dev/null first is the remedy the Python docs give (library/signal, "Note on SIGPIPE").
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_FAILED


def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """`command(args)`'s exit code, or the one its exception stands for."""
    try:
        return command(args)
    except InvalidSpec as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_INVALID
    except ServingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc or 'SIGINT'}): rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _stdout_closed()
    except (MemoryError, RecursionError) as exc:  # the parsers bound this; a last guard
        print(f"error: the input is too large or too deeply nested ({exc!r})", file=sys.stderr)
        return EXIT_INVALID
    except Exception as exc:  # a bug or a system failure: one line, never a traceback
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
