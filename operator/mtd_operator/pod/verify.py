"""`mtd verify`: before an engine starts, every folder it will serve is what its step
recorded (mtd_contract.digests) and holds finite weights.

It runs as the serving pods' init container, in the trainer image (which has numpy and
mounts the workspace volume read-only), so a damaged or replaced adapter on the volume
stops the pod before the engine loads it: the pod never serves it, and the termination
message names the folder and what differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mtd_contract.digests import adapter_problem
from mtd_contract.exits import EXIT_INVALID, EXIT_OK, write_termination


def read_digests(file: Path | None, pairs: list[str]) -> dict[str, str]:
    """Folder → digest, from a JSON file (`{folder: digest}`) and `FOLDER=DIGEST` pairs."""
    digests: dict[str, str] = {}
    if file is not None:
        loaded = json.loads(file.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise ValueError(f"{file}: not a JSON object of folder → digest")
        digests.update(loaded)
    for pair in pairs:
        folder, sep, digest = pair.rpartition("=")
        if not sep or not folder or not digest:
            raise ValueError(f"{pair!r}: expected FOLDER=DIGEST")
        digests[folder] = digest
    return digests


def verify(file: Path | None, pairs: list[str]) -> int:
    """Exit 0 when every folder may be served; else exit 2 naming the first that may not."""
    try:
        digests = read_digests(file, pairs)
    except (OSError, ValueError) as exc:
        message = f"the digests to verify cannot be read: {exc}"
    else:
        problems = [
            f"{folder}: {problem}"
            for folder, digest in sorted(digests.items())
            if (problem := adapter_problem(folder, digest)) is not None
        ]
        if not problems:
            print(f"{len(digests)} served folders match their recorded digests")
            return EXIT_OK
        message = (
            f"refusing to serve {len(problems)} of {len(digests)} folders, which differ from "
            f"what their steps recorded: {'; '.join(problems)}"
        )
    write_termination(message)
    print(message, file=sys.stderr)
    return EXIT_INVALID
