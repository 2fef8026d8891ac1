"""Read a task's JSON Lines file into a `datasets.Dataset`, rejecting bad lines by number.

The file is read line by line and written to Arrow by `datasets`, so memory does not grow
with the file; every record is checked on the way so an error can name `file:line`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import datasets

from mtd_contract import records
from mtd_contract.config import TaskConfig

from .errors import InputError


def iter_records(path: str, labels: tuple[str, ...] | None = None) -> Iterator[dict[str, str]]:
    """Yield {"input", "output"} per non-blank line; raise InputError at the first bad one.

    The rule is the contract's (`mtd_contract.records`), the one profiling applies.
    """
    count = 0
    for number, record in records.iter_records(path, labels):
        if isinstance(record, records.RecordError):
            raise InputError(f"{path}:{number}: {record}")
        count += 1
        yield {"input": record.input, "output": record.output}
    if count == 0:
        raise InputError(f"{path}: empty file, no examples")


def load_examples(path: str, task: TaskConfig) -> datasets.Dataset:
    """The validated examples of one task file, as an Arrow-backed dataset."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{path}: no such data file (task {task.name!r})")
    stat = file.stat()
    # A tuple, not a list: `datasets` would split list arguments across shards.
    labels = tuple(task.labels) if task.type == "classification" and task.labels else None
    try:
        return datasets.Dataset.from_generator(
            iter_records,
            gen_kwargs={"path": str(file.resolve()), "labels": labels},
            features=datasets.Features(
                {"input": datasets.Value("string"), "output": datasets.Value("string")}
            ),
            # The file's size and time are part of the cache key: an edited file reloads.
            fingerprint=None,
            config_name=f"{stat.st_size}-{stat.st_mtime_ns}",
        )
    except Exception as exc:
        found = _input_error_in(exc)
        if found is not None:
            raise found from None
        raise  # not the data's fault: keep what `datasets` says caused it


def _input_error_in(exc: BaseException) -> InputError | None:
    """`datasets` wraps errors raised in the generator; find ours in the chain."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, InputError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
