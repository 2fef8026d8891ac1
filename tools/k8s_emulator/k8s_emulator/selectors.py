"""Label and field selectors, as the API server parses them.

kopf, kubectl (``-l``, ``wait``, ``delete --wait``) and client-go informers all filter
server-side; an emulator that ignores selectors makes such clients see objects they did
not ask for, which hides bugs in the code under test instead of exposing them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from . import validation
from .errors import ApiError

Predicate = Callable[[Mapping[str, Any]], bool]

# ---------------------------------------------------------------------------------- labels
# staging/src/k8s.io/apimachinery/pkg/labels/selector.go: Parse → Lexer and Parser, then
# NewRequirement validates keys and values. The API server turns an error into 400
# BadRequest with the error text as message (staging/src/k8s.io/apiserver/pkg/endpoints/
# handlers/get.go ListResource: DecodeParameters fails in Convert_string_To_labels_Selector).
# The lexer and parser below follow that grammar and those messages; matching follows
# Requirement.Matches.

_SPECIAL = frozenset("=!(),><")
_OPERATOR_TOKENS = ("!=", "==", "=", "!", "(", ")", ",", ">", "<")
_BINARY_OPERATORS = ("in", "notin", "=", "==", "!=", ">", "<")
_END = ("end", "")  # the EndOfStringToken


def _lex(text: str) -> list[tuple[str, str]]:
    """selector.go Lexer: (token kind, literal) pairs; kinds are "id", "end", "error",
    the keywords "in"/"notin" and the operator literals themselves."""
    items: list[tuple[str, str]] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            items.append(_END)
            return items
        if text[pos] in _SPECIAL:
            # scanSpecialSymbol: the longest operator made of special characters.
            op = next(t for t in _OPERATOR_TOKENS if text.startswith(t, pos))
            items.append((op, op))
            pos += len(op)
            continue
        start = pos
        while pos < len(text) and text[pos] not in _SPECIAL and text[pos] not in " \t\r\n":
            pos += 1
        word = text[start:pos]
        items.append((word if word in ("in", "notin") else "id", word))


class _Parser:
    """selector.go Parser: a recursive descent over the lexed items."""

    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def _peek(self, values: bool = True) -> tuple[str, str]:
        kind, lit = self.items[self.pos]
        if values and kind in ("in", "notin"):  # in a value position a keyword is a value
            kind = "id"
        return kind, lit

    def _take(self, values: bool = True) -> tuple[str, str]:
        item = self._peek(values)
        self.pos += 1
        return item

    def parse(self) -> list[tuple[str, str, list[str]]]:
        requirements: list[tuple[str, str, list[str]]] = []
        while True:
            kind, lit = self._peek()
            if kind == "end":
                return requirements
            if kind not in ("id", "!"):
                raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self._requirement())
            except ValueError as exc:
                raise ValueError(f"unable to parse requirement: {exc}") from None
            kind, lit = self._take()
            if kind == "end":
                return requirements
            if kind != ",":
                raise ValueError(f"found '{lit}', expected: ',' or 'end of string'")
            kind2, lit2 = self._peek()
            if kind2 not in ("id", "!"):
                raise ValueError(f"found '{lit2}', expected: identifier after ','")

    def _requirement(self) -> tuple[str, str, list[str]]:
        operator = ""
        kind, key = self._take()
        if kind == "!":
            operator = "!"
            kind, key = self._take()
        if kind != "id":
            raise ValueError(f"found '{key}', expected: identifier")
        errs = validation.is_qualified_name(key)
        if errs:
            # validateLabelKey with the parser's (nil) field path, printed as "<nil>".
            raise ValueError(_field_invalid("<nil>", key, "; ".join(errs)))
        if operator == "!" or self._peek()[0] in ("end", ","):
            # parseRequirement: "!key" ends the requirement whatever follows.
            return (key, operator or "exists", [])
        kind, lit = self._take(values=False)
        if kind not in _BINARY_OPERATORS:
            raise ValueError(f"found '{lit}', expected: " + ", ".join(_BINARY_OPERATORS))
        operator = kind
        values = self._set_values() if operator in ("in", "notin") else self._exact_value()
        _check_requirement(key, operator, values)
        return (key, operator, values)

    def _set_values(self) -> list[str]:
        kind, lit = self._take()
        if kind != "(":
            raise ValueError(f"found '{lit}' expected: '('")
        kind, lit = self._peek()
        if kind == ")":
            self._take()
            return [""]
        if kind not in ("id", ","):
            raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")
        values: set[str] = set()
        while True:
            kind, lit = self._take()
            if kind == "id":
                values.add(lit)
                kind2, lit2 = self._peek()
                if kind2 == ")":
                    break
                if kind2 != ",":
                    raise ValueError(f"found '{lit2}', expected: ',' or ')'")
            elif kind == ",":
                if not values:
                    values.add("")
                kind2, _ = self._peek()
                if kind2 == ")":
                    values.add("")
                    break
                if kind2 == ",":
                    values.add("")
            else:
                raise ValueError(f"found '{lit}', expected: ',', or identifier")
        self._take()  # the ")"
        return sorted(values)

    def _exact_value(self) -> list[str]:
        kind, _ = self._peek()
        if kind in ("end", ","):
            return [""]
        kind, lit = self._take()
        if kind != "id":
            raise ValueError(f"found '{lit}', expected: identifier")
        return [lit]


def _field_invalid(field: str, value: str, detail: str) -> str:
    return f"{field}: " + validation.invalid(field, value, detail)["message"]


def _check_requirement(key: str, operator: str, values: list[str]) -> None:
    """selector.go NewRequirement: the value rules (keys were checked by the parser)."""
    errors: list[str] = []
    if operator in (">", "<"):
        for i, value in enumerate(values):
            try:
                int(value, 10)
            except ValueError:
                errors.append(_field_invalid(
                    f"values[{i}]", value,
                    "for 'Gt', 'Lt' operators, the value must be an integer"))
    for i, value in enumerate(values):
        errs = validation.is_valid_label_value(value)
        if errs:
            errors.append(_field_invalid(f"values[{i}][{key}]", value, "; ".join(errs)))
    if errors:
        # field.ErrorList.ToAggregate: one error alone, several as "[a, b]".
        raise ValueError(errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]")


def _matches(key: str, operator: str, values: list[str], labels: Mapping[str, Any]) -> bool:
    """selector.go Requirement.Matches."""
    if operator in ("in", "=", "=="):
        return key in labels and labels[key] in values
    if operator in ("notin", "!="):
        return key not in labels or labels[key] not in values
    if operator == "exists":
        return key in labels
    if operator == "!":
        return key not in labels
    try:
        have, want = int(str(labels[key]), 10), int(values[0], 10)
    except (KeyError, ValueError):
        return False
    return have > want if operator == ">" else have < want


def parse_label_selector(text: str | None) -> Predicate:
    """Rule 3: parse ``a=b,c!=d,e in (f,g),h notin (i),j,!k,l>1`` like labels.Parse;
    a malformed selector or an invalid key or value raises 400 BadRequest."""
    if not text:
        return lambda labels: True
    try:
        requirements = _Parser(text).parse()
    except ValueError as exc:
        raise ApiError.bad_request(str(exc)) from None
    return lambda labels: all(_matches(k, op, vs, labels) for k, op, vs in requirements)


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
