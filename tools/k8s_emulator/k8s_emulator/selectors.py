"""Label and field selectors, as the API server parses them.

kopf, kubectl (``-l``, ``wait``, ``delete --wait``) and client-go informers all filter
server-side; an emulator that ignores selectors makes such clients see objects they did
not ask for, which hides bugs in the code under test instead of exposing them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ApiError

Predicate = Callable[[Mapping[str, Any]], bool]

_SET_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses (``a in (x,y),b`` → 2 terms)."""
    terms: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        terms.append(current)
    return [t.strip() for t in terms if t.strip()]


def _in_check(key: str, values: set[str], negate: bool) -> Predicate:
    return lambda labels: (labels.get(key) in values) != negate


def _eq_check(key: str, value: str, negate: bool) -> Predicate:
    return lambda labels: (labels.get(key) == value) != negate


def _exists_check(key: str, negate: bool) -> Predicate:
    return lambda labels: (key in labels) != negate


def parse_label_selector(text: str | None) -> Predicate:
    """Parse ``a=b,c!=d,e in (f,g),h notin (i),j,!k`` into a predicate over labels."""
    if not text:
        return lambda labels: True
    checks: list[Predicate] = []
    for term in _split_top_level(text):
        match = _SET_RE.match(term)
        if match:
            key, op, raw_values = match.groups()
            values = {v.strip() for v in raw_values.split(",") if v.strip()}
            checks.append(_in_check(key, values, negate=op == "notin"))
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            checks.append(_eq_check(key, value, negate=True))
        elif "=" in term:
            key, value = (s.strip() for s in re.split(r"==?", term, maxsplit=1))
            checks.append(_eq_check(key, value, negate=False))
        elif term.startswith("!"):
            checks.append(_exists_check(term[1:].strip(), negate=True))
        elif re.fullmatch(r"[A-Za-z0-9_./-]+", term):
            checks.append(_exists_check(term, negate=False))
        else:
            raise ApiError.bad_request(f"unable to parse requirement: {term!r}")
    return lambda labels: all(check(labels) for check in checks)


def _field_value(obj: Mapping[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


SUPPORTED_FIELDS = ("metadata.name", "metadata.namespace", "status.phase", "spec.nodeName",
                    "involvedObject.name", "involvedObject.uid", "involvedObject.kind",
                    "type", "reason")


def parse_field_selector(text: str | None) -> Predicate:
    """Parse ``metadata.name=x,metadata.namespace!=y`` into a predicate over whole objects."""
    if not text:
        return lambda obj: True
    checks: list[Predicate] = []
    for term in _split_top_level(text):
        negate = "!=" in term
        key, value = (s.strip() for s in re.split(r"!=|==|=", term, maxsplit=1))
        if key not in SUPPORTED_FIELDS:
            raise ApiError.bad_request(
                f'field label not supported: {key}'
            )

        def check(obj: Mapping[str, Any], k: str = key, v: str = value, neg: bool = negate) -> bool:
            actual = _field_value(obj, k)
            actual_str = "" if actual is None else str(actual)
            return (actual_str != v) if neg else (actual_str == v)

        checks.append(check)
    return lambda obj: all(check(obj) for check in checks)
