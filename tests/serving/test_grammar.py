"""The regex check on its own: partial matches, end of match, unfinished characters."""

from __future__ import annotations

import pytest

from mtd_trainer.serving.grammar import GrammarError, RegexConstraint, allowed_tokens


def test_partial_and_complete() -> None:
    labels = RegexConstraint("pos|neg|neutral")
    assert labels.allows("") and labels.allows("ne") and labels.allows("neu")
    assert not labels.allows("nx") and not labels.allows("posx")
    assert labels.complete("neg") and not labels.complete("ne")


def test_unfinished_characters_need_a_witness() -> None:
    labels = RegexConstraint("正面|负面")
    first = "正".encode()
    assert labels.allows_piece("", ("", first[:1]))
    assert labels.allows_piece("", ("", first[:2]))
    assert not labels.allows_piece("", ("", "中".encode()[:2]))
    assert not RegexConstraint("[a-z]+").allows_piece("", ("", first[:1]))
    assert RegexConstraint(".+").allows_piece("", ("", "😀".encode()[:2]))


def test_allowed_tokens_order_end_and_specials() -> None:
    labels = RegexConstraint("ab|b")
    pieces = {1: ("a", b""), 2: ("b", b""), 3: ("c", b""), 8: ("", b""), 9: ("", b"")}
    order = [3, 9, 8, 1, 2]  # best first; 9 is the end token, 8 another special token
    assert allowed_tokens(
        labels, "", order, pieces.__getitem__, frozenset({9}), frozenset({8, 9}), False
    ) == [1]
    assert allowed_tokens(
        labels, "", order, pieces.__getitem__, frozenset({9}), frozenset({8, 9}), True
    ) == [1, 2]
    assert allowed_tokens(
        labels, "ab", order, pieces.__getitem__, frozenset({9}), frozenset({8, 9}), True
    ) == [9]


@pytest.mark.parametrize("pattern", ["", "(a", "[z-a]"])
def test_bad_patterns_are_grammar_errors(pattern: str) -> None:
    with pytest.raises(GrammarError):
        RegexConstraint(pattern)
