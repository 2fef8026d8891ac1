"""Reading a MultiTaskDeployment from a YAML file, with every problem reported at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .api.spec import MultiTaskDeployment
from .core.problems import InvalidSpec, Problem, problems_from_validation
from .core.profile import CompositionProfile, TaskProfile, profile_compositions, profile_spec

# libyaml's loader is ~10x faster on large specs; same safe semantics.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidSpec([Problem("", f"{path}: no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidSpec([Problem("", f"{path}: cannot be read: {exc}")]) from None
    try:
        documents = [doc for doc in yaml.load_all(text, Loader=_Loader) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        reason = getattr(exc, "problem", None) or str(exc)
        raise InvalidSpec([Problem("", f"{where}: malformed YAML: {reason}")]) from None
    if len(documents) != 1:
        raise InvalidSpec(
            [Problem("", f"{path}: expected exactly one YAML document, found {len(documents)}")]
        )
    return parse_resource(documents[0])


def load_and_profile(
    path: Path,
) -> tuple[MultiTaskDeployment, dict[str, TaskProfile], dict[str, CompositionProfile]]:
    """The resource and the profiles of its tasks' and compositions' data; data paths
    resolve against the file's folder. Every problem of every file is reported at once."""
    resource = load_resource(path)
    base_dir = path.resolve().parent
    profiles, problems = profile_spec(resource.spec, base_dir)
    compositions, composition_problems = profile_compositions(resource.spec, base_dir)
    if problems or composition_problems:
        raise InvalidSpec(problems + composition_problems)
    return resource, profiles, compositions
