"""Regex-constrained decoding: which next tokens keep the output a prefix of a match.

TGI compiles a grammar into a token-level automaton (outlines). Here the check is done
on text instead: a candidate token is allowed when the output so far plus the token's
text is still a prefix of some string the pattern matches (`regex` partial matching),
and the end token is allowed only once the output is a complete match. Candidates are
tried in the model's order of preference, so greedy decoding under a grammar returns
exactly the most likely allowed token at every step, and a small label set is always
respected, whatever the model prefers. The cost is a few decodes and regex calls per
step for the top candidates; the rest of the vocabulary is scanned only when none of
them fits.

Byte-level tokenizers split many characters (most CJK ones, emoji) over several tokens.
A token that ends inside a character is allowed only if some character starting with
its bytes keeps the match alive; the witnesses tried are the pattern's own non-ASCII
characters (exact for label sets such as 正面|负面) and the first characters of the
byte range (enough for classes such as `.` or `\\w`). A token is never let through on
hope: the output cannot reach a dead end through a half-written character.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import regex

#: How many candidates are examined at once; the first chunk is the model's top choices.
CHUNK = 64
#: How many characters of a byte range are tried as witnesses besides the pattern's own.
RANGE_WITNESSES = 64

#: What a candidate token would append: complete text, then the bytes of an unfinished
#: character (empty when the token ends on a character boundary).
Piece = tuple[str, bytes]


class GrammarError(ValueError):
    """The grammar cannot be used (bad pattern, unsupported type): the request is invalid."""


class RegexConstraint:
    """A compiled pattern that must match the whole generated text."""

    def __init__(self, pattern: str) -> None:
        if not pattern:
            raise GrammarError("grammar: `value` cannot be empty for a `regex` grammar")
        try:
            self.pattern = regex.compile(pattern)
        except regex.error as exc:
            raise GrammarError(f"grammar: invalid regex {pattern!r}: {exc}") from None
        self._literals = sorted({c for c in pattern if ord(c) > 0x7F})

    def allows(self, text: str) -> bool:
        """Whether `text` can still grow into a full match."""
        return self.pattern.fullmatch(text, partial=True) is not None

    def complete(self, text: str) -> bool:
        """Whether `text` is already a full match (so the output may end here)."""
        return self.pattern.fullmatch(text) is not None

    def allows_piece(self, text: str, piece: Piece) -> bool:
        """Whether `text` + the piece can still grow into a full match."""
        complete, pending = piece
        if not pending:
            return self.allows(text + complete)
        return any(self.allows(text + complete + c) for c in self._witnesses(pending))

    def _witnesses(self, pending: bytes) -> list[str]:
        found = [c for c in self._literals if c.encode("utf-8").startswith(pending)]
        length = utf8_length(pending[0])
        if length <= len(pending):
            return found
        pad = b"\x80" * (length - len(pending) - 1)
        for low in range(RANGE_WITNESSES):
            try:
                found.append((pending + bytes([0x80 + low]) + pad).decode("utf-8"))
            except UnicodeDecodeError:  # overlong forms and surrogates are not characters
                continue
        return found


def utf8_length(lead: int) -> int:
    """How many bytes a UTF-8 sequence starting with `lead` has (0 if it cannot start one)."""
    for length, (mask, value) in enumerate(
        ((0x80, 0), (0xE0, 0xC0), (0xF0, 0xE0), (0xF8, 0xF0)), 1
    ):
        if lead & mask == value:
            return length
    return 0


def allowed_tokens(
    constraint: RegexConstraint,
    text: str,
    order: Sequence[int],
    piece: Callable[[int], Piece],
    end_tokens: frozenset[int],
    special_tokens: frozenset[int],
    want_all: bool,
) -> list[int]:
    """Token ids (from `order`, best first) that keep `text` within the grammar.

    `piece(id)` is what a token would append. With `want_all` False the first allowed
    token is enough (greedy decoding); with it True every allowed token of the first
    chunk that has any is returned (sampling).
    End tokens are allowed only on a complete match; other special tokens never are,
    since they add no text and could repeat forever.
    """
    can_end = constraint.complete(text)
    found: list[int] = []
    for chunk in _chunks(order):
        for token in chunk:
            if token in end_tokens:
                ok = can_end
            elif token in special_tokens:
                ok = False
            else:
                ok = constraint.allows_piece(text, piece(token))
            if ok:
                found.append(token)
                if not want_all:
                    return found
        if found:
            return found
    return found


def _chunks(order: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(order), CHUNK):
        yield order[start : start + CHUNK]
