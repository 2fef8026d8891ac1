"""The JSON Lines record rule: one definition for profiling and for the trainer's data loading.

A data file holds one `{"input": "...", "output": "..."}` object a line. Profiling (in the
operator's Job, or `mtd validate`/`mtd run` locally) and the trainer read the same files
with `check_line`, so a line one accepts is a line the other accepts. Files are read as
bytes and split on b"\\n" only (never on a lone "\\r" or U+2028, as text mode or
`str.splitlines` would), so both count the same line numbers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .limits import MAX_LINE_BYTES

#: Characters of a data value an error message may quote: enough to find the line, too
#: few to copy a secret out of a file that should never have been read.
QUOTE_CHARS = 12
BOM = "\ufeff"
FIELDS = ("input", "output")


class RecordError(ValueError):
    """One line that is not a usable record; the message says what is wrong and what is
    allowed, without the file and line (the caller knows them)."""


@dataclass(frozen=True)
class Record:
    input: str
    output: str


def quote(value: str) -> str:
    """A short, repr-quoted prefix of a data value for an error message."""
    if len(value) <= QUOTE_CHARS:
        return repr(value)
    return f"{value[:QUOTE_CHARS]!r}... ({len(value)} characters)"


def _label_hint(output: str, labels: Sequence[str]) -> str:
    folded = {label.casefold().strip(): label for label in labels}
    match = folded.get(output.casefold().strip())
    if match is not None:
        return f"; did you mean {match!r}? (labels are matched exactly)"
    return ""


def _is_text(value: str) -> bool:
    """False for strings holding lone surrogates (JSON escapes like "\\ud800"): they
    cannot be written as UTF-8, so no tokenizer or Arrow table would take them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_line(raw: bytes, labels: Sequence[str] | None, first: bool = False) -> Record | None:
    """The record on one line; None for a blank line; RecordError for a bad one.

    `labels` is the task's label set (classification: `output` must be one of them,
    exactly); None for generation (`output` must not be blank). A UTF-8 byte order mark
    is allowed at the start of the file (`first`), as editors on Windows write one.
    """
    if len(raw) > MAX_LINE_BYTES:
        raise RecordError(f"line is longer than {MAX_LINE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if first:
        text = text.removeprefix(BOM)
    if not text.strip():
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"not valid JSON ({exc.msg}, column {exc.colno})") from None
    except RecursionError:  # nesting deeper than the parser goes
        raise RecordError("not a record: JSON nested too deeply") from None
    except ValueError as exc:
        raise RecordError(f"not valid JSON ({type(exc).__name__})") from None
    if not isinstance(record, dict):
        raise RecordError('expected an object like {"input": "...", "output": "..."}')
    missing = [key for key in FIELDS if key not in record]
    if missing:
        raise RecordError(f"missing key(s) {', '.join(missing)}")
    for key in FIELDS:
        if not isinstance(record[key], str):
            raise RecordError(
                f"{key!r} must be a string, not {type(record[key]).__name__} "
                "('input' and 'output' must be strings)"
            )
        if not _is_text(record[key]):
            raise RecordError(f"{key!r} holds a lone surrogate (an escape like \\ud800)")
    output = record["output"]
    if labels is not None:
        if output not in labels:
            raise RecordError(
                f"output {quote(output)} is not a label; allowed: {', '.join(labels)}"
                + _label_hint(output, labels)
            )
    elif not output.strip():
        raise RecordError("'output' is empty")
    return Record(input=record["input"], output=output)


def lines(handle: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, raw bytes) of every line, split on b"\\n" only.

    Read in bounded pieces: a line longer than MAX_LINE_BYTES comes out cut to
    MAX_LINE_BYTES + 1 bytes (so `check_line` refuses it) and the rest of it is skipped
    in chunks, never held whole (a 2 GiB line took 4.3 GB and 41 s to be refused)."""
    number = 0
    while True:
        raw = handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := handle.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
        yield number, raw


def iter_records(
    path: str | Path, labels: Sequence[str] | None
) -> Iterator[tuple[int, Record | RecordError]]:
    """Every non-blank line's record or error, with its line number (streams the file)."""
    with open(path, "rb") as handle:
        for number, raw in lines(handle):
            try:
                record = check_line(raw, labels, first=number == 1)
            except RecordError as exc:
                yield number, exc
                continue
            if record is not None:
                yield number, record
