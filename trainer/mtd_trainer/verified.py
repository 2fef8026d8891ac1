"""Step results that say what was produced, and reuse that checks it (mtd_contract.digests).

Every result the trainer writes carries the sha256 of each file the step produced and a
digest of its own JSON. A result found on disk is reused only when both still match; a
damaged one is moved aside (kept, never deleted) and the step runs again. Weights with an
infinity or a NaN are never written as a result: the run fails naming the tensor.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mtd_contract.digests import (
    file_digest,
    files_problem,
    folder_digest,
    folder_files,
    nonfinite_weights,
    seal_problem,
    sealed,
)

from .atomic import write_json
from .errors import InputError

log = logging.getLogger(__name__)


def write_result(path: Path, result: dict[str, Any], produced: Iterable[Path]) -> dict[str, Any]:
    """Write `result` at `path` with the digests of every file under each of `produced`
    (folders or files beside it; paths recorded relative to `path`'s folder). Raises
    InputError, writing nothing, when a produced weight is not finite."""
    root = path.parent
    files: dict[str, str] = {}
    for item in produced:
        relative = item.relative_to(root).as_posix()
        if item.is_dir():
            problem = nonfinite_weights(item)
            if problem is not None:
                raise InputError(
                    f"{problem}: the weights are not finite, so nothing was published "
                    "(a run that diverged: lower spec.training.learningRate)"
                )
            files.update(folder_files(item, prefix=f"{relative}/"))
        else:
            files[relative] = file_digest(item)
    result = sealed({**result, "files": files})
    write_json(path, result)
    return result


def scored_digests(result_path: Path, folders: Iterable[str | None]) -> dict[str, str]:
    """Folder → digest of the adapters (or models) an evaluation scores, recorded in its
    result (`scored`): scores describe those files, and no longer hold once they change.
    Folders are recorded relative to the result's own folder (a workspace can move)."""
    root = result_path.parent.resolve()
    return {
        os.path.relpath(Path(folder).resolve(), root): folder_digest(folder_files(folder))
        for folder in sorted({f for f in folders if f is not None})
    }


def reusable(path: Path) -> dict[str, Any] | None:
    """The result at `path` if it and every file it records are as written; else None,
    with a damaged result moved aside so the step runs again."""
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        problem = seal_problem(result) if isinstance(result, dict) else "not a JSON object"
    except (OSError, ValueError, RecursionError) as exc:
        problem = f"cannot be read ({exc})"
        result = None
    if problem is None and isinstance(result, dict):
        problem = files_problem(path.parent, result.get("files") or {})
    if problem is None:
        return result
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    path.rename(aside)
    log.warning("%s cannot be reused: %s; kept at %s, running the step again", path, problem, aside)
    return None
