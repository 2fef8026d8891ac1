"""Reading a MultiTaskDeployment from a YAML file, with every problem reported at once.

The file is untrusted input: before anything is built from it, its size is capped and
its event stream is scanned for nesting depth and for the number of nodes aliases would
expand to. libyaml's composer recurses once per level (30,000 nested `[` crash the
process) and an alias "billion laughs" is small on disk but huge once validated; the
scan rejects both in time linear in the file, without building a node, and refuses a
mapping that repeats a key (PyYAML would keep the last value without a word).
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .api.spec import MultiTaskDeployment
from .core.problems import InvalidData, InvalidSpec, Problem, problems_from_validation
from .core.profile import CompositionProfile, TaskProfile
from .data_files import profile_compositions, profile_spec

# libyaml's loader is ~10x faster on large specs; same safe semantics.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Largest spec file read (10,000 tasks take about 2.5 MB).
MAX_SPEC_BYTES = 16 * 1024 * 1024
#: Deepest nesting of mappings and sequences (a real spec needs 6).
MAX_SPEC_DEPTH = 64
#: Most nodes the document may hold once every alias is expanded.
MAX_SPEC_NODES = 2_000_000


def _scan_events(text: str, where: str) -> None:
    """Raise InvalidSpec if the YAML nests too deep or its aliases expand too far."""
    depth = 0
    nodes = 0
    # One frame per open collection: [nodes when it opened, its anchor, its height, the
    # keys seen (a mapping's; None for a sequence), whether the next node is a key].
    frames: list[list] = []
    anchored: dict[str, tuple[int, int]] = {}  # anchor -> (expanded nodes, height)

    def fail(event: yaml.Event, message: str) -> None:
        mark = event.start_mark
        raise InvalidSpec([Problem("", f"{where}:{mark.line + 1}:{mark.column + 1}: {message}")])

    def grow(event: yaml.Event, count: int, height: int) -> None:
        nonlocal nodes
        nodes += count
        if nodes > MAX_SPEC_NODES:
            fail(event, f"more than {MAX_SPEC_NODES} nodes once aliases are expanded")
        if depth + height > MAX_SPEC_DEPTH:
            fail(event, f"nested deeper than {MAX_SPEC_DEPTH} levels")
        if frames:
            frames[-1][2] = max(frames[-1][2], height + 1)

    def node(event: yaml.Event) -> None:
        """A node inside the open collection: a mapping's keys must be unique (YAML 1.2
        requires it; PyYAML keeps the last value silently, kubectl refuses the file)."""
        if not frames or frames[-1][3] is None:
            return
        frame = frames[-1]
        if frame[4] and isinstance(event, yaml.ScalarEvent) and event.value != "<<":
            if event.value in frame[3]:
                fail(event, f"duplicate key {event.value!r} (only one would be kept)")
            frame[3].add(event.value)
        frame[4] = not frame[4]

    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.ScalarEvent | yaml.AliasEvent | yaml.CollectionStartEvent):
            node(event)
        if isinstance(event, yaml.ScalarEvent):
            grow(event, 1, 0)
            if event.anchor:
                anchored[event.anchor] = (1, 0)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchored:
                fail(event, f"alias *{event.anchor} names no anchor before it")
            grow(event, *anchored[event.anchor])
        elif isinstance(event, yaml.CollectionStartEvent):
            grow(event, 1, 0)
            depth += 1
            keys = set() if isinstance(event, yaml.MappingStartEvent) else None
            frames.append([nodes, event.anchor, 0, keys, True])
        elif isinstance(event, yaml.CollectionEndEvent):
            opened, anchor, height, _, _ = frames.pop()
            depth -= 1
            if anchor:
                anchored[anchor] = (nodes - opened + 1, height)
            if frames:
                frames[-1][2] = max(frames[-1][2], height + 1)


def _read_spec_text(path: Path) -> str:
    """The file's text, refusing what is not a regular file of sensible size."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InvalidSpec([Problem("", f"{path}: no such file")]) from None
    except OSError as exc:
        raise InvalidSpec([Problem("", f"{path}: cannot be read: {exc.strerror}")]) from None
    if not stat.S_ISREG(info.st_mode):
        raise InvalidSpec([Problem("", f"{path}: not a regular file")])
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise InvalidSpec([Problem("", f"{path}: cannot be read: {exc.strerror}")]) from None
    if len(data) > MAX_SPEC_BYTES:
        raise InvalidSpec([Problem("", f"{path}: larger than {MAX_SPEC_BYTES} bytes")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSpec(
            [Problem("", f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None


def parse_resource(raw: Any) -> MultiTaskDeployment:
    """Validate an already-parsed document against the models."""
    if not isinstance(raw, dict):
        raise InvalidSpec([Problem("", "expected a MultiTaskDeployment object (a YAML mapping)")])
    problems: list[Problem] = []
    api_version, kind = raw.get("apiVersion"), raw.get("kind")
    if kind != "MultiTaskDeployment":
        problems.append(Problem("kind", f"{kind!r} is not allowed; expected 'MultiTaskDeployment'"))
    if api_version != "multitask.dev/v1alpha1":
        problems.append(
            Problem(
                "apiVersion", f"{api_version!r} is not allowed; expected 'multitask.dev/v1alpha1'"
            )
        )
    if problems:
        raise InvalidSpec(problems)
    try:
        return MultiTaskDeployment.model_validate(raw)
    except ValidationError as exc:
        raise InvalidSpec(problems_from_validation(exc, MultiTaskDeployment)) from None


def load_resource(path: Path) -> MultiTaskDeployment:
    text = _read_spec_text(path)
    try:
        _scan_events(text, str(path))
        documents = [doc for doc in yaml.load_all(text, Loader=_Loader) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        reason = getattr(exc, "problem", None) or str(exc)
        raise InvalidSpec([Problem("", f"{where}: malformed YAML: {reason}")]) from None
    except ValueError as exc:
        # A scalar the loader cannot convert, e.g. an integer of more than 4,300 digits
        # (Python's int-from-string limit): no spec value is anywhere near.
        raise InvalidSpec([Problem("", f"{path}: a value cannot be read: {exc}")]) from None
    if len(documents) != 1:
        raise InvalidSpec(
            [Problem("", f"{path}: expected exactly one YAML document, found {len(documents)}")]
        )
    return parse_resource(documents[0])


def load_and_profile(
    path: Path, check_base_model: bool = False
) -> tuple[MultiTaskDeployment, dict[str, TaskProfile], dict[str, CompositionProfile]]:
    """The resource and the profiles of its tasks' and compositions' data; data paths
    resolve inside the file's folder. Every problem of every file is reported at once;
    `check_base_model` adds a local base model path that is not a model folder."""
    resource = load_resource(path)
    return (resource, *profile_resource(resource, path, check_base_model))


def profile_resource(
    resource: MultiTaskDeployment, path: Path, check_base_model: bool = False
) -> tuple[dict[str, TaskProfile], dict[str, CompositionProfile]]:
    """The profiles of a loaded resource's data, which lies in `path`'s folder. Raises
    InvalidData when only the data is wrong, InvalidSpec when the spec is too."""
    base_dir = path.resolve().parent
    spec_problems = local_base_model_problems(resource, base_dir) if check_base_model else []
    profiles, task_problems = profile_spec(resource.spec, base_dir)
    compositions, composition_problems = profile_compositions(resource.spec, base_dir)
    data_problems = task_problems + composition_problems
    if spec_problems:
        raise InvalidSpec(spec_problems + data_problems)
    if data_problems:
        raise InvalidData(data_problems)
    return profiles, compositions


def local_base_model_problems(resource: MultiTaskDeployment, base_dir: Path) -> list[Problem]:
    """A base model given as a path must be a model folder here, or `mtd run` would fail
    only after profiling and planning. pvc:// and hf:// are not checked (not local)."""
    uri = resource.spec.base_model.uri
    if uri.startswith(("pvc://", "hf://")):
        return []
    folder = base_dir / uri
    if (folder / "config.json").is_file():
        return []
    return [
        Problem(
            "spec.baseModel.uri",
            f"{uri!r}: no model folder at {folder} (no config.json); give the folder of a "
            "transformers model, pvc://CLAIM/PATH or hf://ORG/NAME",
        )
    ]
