"""Problems a person can act on: the field path, what is wrong, what is allowed.

Pydantic's errors are turned into one line each, with paths in the form users see in
their YAML (`spec.tasks[2].labels`) and, for unknown fields, the fields that are allowed.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ..api.spec import DNS1123_LABEL


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InvalidSpec(ValueError):
    """Raised with every problem found, so one run reports them all."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class InvalidData(InvalidSpec):
    """The spec is valid but its data files are not (missing, malformed, too small)."""


def format_loc(loc: tuple[Any, ...], prefix: str = "") -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def _unwrap(annotation: Any) -> Any:
    """The model class behind Optional[X], list[X], Annotated[X, ...]."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (list, tuple, set, frozenset):
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                return _unwrap(arg)
    return annotation


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = next(
            (f for name, f in model.model_fields.items() if part in (name, f.alias)),
            None,
        )
        if field is None:
            return None
        model = _unwrap(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _allowed_fields(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


#: Patterns of the API, said in words (the regex itself tells a user little).
PATTERN_RULES: dict[str, str] = {
    DNS1123_LABEL: "a DNS-1123 label: lowercase letters, digits and '-', "
    "starting and ending with a letter or digit (at most 63 characters)",
}


def problems_from_validation(
    error: ValidationError, root: type[BaseModel], prefix: str = ""
) -> list[Problem]:
    problems = []
    for err in error.errors(include_url=False):
        loc = tuple(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            parent = _model_at(root, loc[:-1])
            message = "unknown field"
            if parent is not None:
                message += "; allowed: " + ", ".join(_allowed_fields(parent))
        elif err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] in {"literal_error", "enum"}:
            message = f"{err['input']!r} is not allowed; {message[0].lower()}{message[1:]}"
        elif err["type"] == "string_pattern_mismatch":
            rule = PATTERN_RULES.get((err.get("ctx") or {}).get("pattern", ""))
            if rule is not None:
                message = f"{str(err['input'])[:100]!r} is not {rule}"
        problems.append(Problem(format_loc(loc, prefix), message))
    return problems
