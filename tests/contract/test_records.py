"""One JSON Lines rule: a line profiling accepts is a line the trainer accepts, and back."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtd_contract.records import MAX_LINE_BYTES, Record, RecordError, check_line
from mtd_operator.data_files import profile_file
from mtd_trainer.data import iter_records
from mtd_trainer.errors import InputError

LABELS = ["pos", "neg"]
GOOD = b'{"input": "a film", "output": "pos"}\n'

# (name, file bytes, labels or None for generation, accepted?)
CASES = [
    ("good", GOOD + b'{"input": "b", "output": "neg"}\n', LABELS, True),
    ("label with spaces", GOOD + b'{"input": "b", "output": " neg "}\n', LABELS, False),
    ("label in another case", b'{"input": "b", "output": "Pos"}\n', LABELS, False),
    ("bom at the start", b"\xef\xbb\xbf" + GOOD, LABELS, True),
    ("bom on line 2", GOOD + b"\xef\xbb\xbf" + GOOD, LABELS, False),
    ("crlf", GOOD.replace(b"\n", b"\r\n") * 2, LABELS, True),
    ("lone cr joins two records", GOOD.rstrip(b"\n") + b"\r" + GOOD, LABELS, False),
    ("u+2028 inside a string", '{"input": "a\u2028b", "output": "pos"}\n'.encode(), LABELS, True),
    ("blank lines around", b"\n  \r\n" + GOOD + b"\n", LABELS, True),
    ("output a number", b'{"input": "a", "output": 1}\n', ["1", "2"], False),
    ("output null", b'{"input": "a", "output": null}\n', None, False),
    ("output a list", b'{"input": "a", "output": ["pos"]}\n', LABELS, False),
    ("input a number", b'{"input": 3, "output": "pos"}\n', LABELS, False),
    ("missing input", b'{"output": "pos"}\n', LABELS, False),
    ("not an object", b'["a", "pos"]\n', LABELS, False),
    ("empty file", b"", LABELS, False),
    ("only blank lines", b"\n \n\r\n", None, False),
    ("blank generation output", b'{"input": "a", "output": "  "}\n', None, False),
    ("generation output kept as is", b'{"input": "a", "output": " text "}\n', None, True),
    ("not utf-8", b'{"input": "caf\xe9", "output": "pos"}\n', LABELS, False),
    ("lone surrogate", b'{"input": "\\ud800", "output": "pos"}\n', LABELS, False),
    ("surrogate pair", b'{"input": "\\ud83d\\ude00", "output": "pos"}\n', LABELS, True),
    ("deep nesting", b'{"input": ' + b"[" * 100_000 + b"\n", LABELS, False),
    ("truncated", GOOD + b'{"input": "b", "outp', LABELS, False),
    ("too long", b'{"input": "' + b"x" * MAX_LINE_BYTES + b'", "output": "pos"}\n', LABELS, False),
]


def trainer_accepts(path: Path, labels: list[str] | None) -> list[tuple[str, str]] | None:
    try:
        rows = list(iter_records(str(path), tuple(labels) if labels else None))
    except InputError:
        return None
    return [(row["input"], row["output"]) for row in rows]


@pytest.mark.parametrize(("content", "labels", "accepted"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_profiling_and_trainer_agree(
    tmp_path: Path, content: bytes, labels: list[str] | None, accepted: bool
) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    profile, problems = profile_file(path, "spec.tasks[0].data.train", labels)
    trained = trainer_accepts(path, labels)
    assert (profile is not None) is accepted, problems
    assert (trained is not None) is accepted
    if accepted:
        assert profile is not None and trained is not None
        assert profile.examples == len(trained)
    else:
        assert problems and all(p.path == "spec.tasks[0].data.train" for p in problems)


def test_errors_name_what_is_allowed() -> None:
    with pytest.raises(RecordError, match=r"not a label; allowed: pos, neg; did you mean 'neg'"):
        check_line(b'{"input": "a", "output": " Neg"}', LABELS)
    with pytest.raises(RecordError, match=r"'output' must be a string, not int"):
        check_line(b'{"input": "a", "output": 1}', None)
    assert check_line(b"  \r\n", None) is None
    assert check_line(b'\xef\xbb\xbf{"input": "a", "output": "b"}', None, first=True) == Record(
        "a", "b"
    )


def test_an_overlong_line_is_read_in_bounded_pieces_and_refused(tmp_path, monkeypatch):
    """Only MAX_LINE_BYTES + 1 bytes of a long line are ever held; later lines keep their
    numbers."""
    from mtd_contract import records

    monkeypatch.setattr(records, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "data.jsonl"
    good = b'{"input": "a", "output": "b"}\n'
    path.write_bytes(good + b"x" * 5_000_000 + b"\n" + good)
    with open(path, "rb") as handle:
        raw = dict(records.lines(handle))
    assert sorted(raw) == [1, 2, 3] and len(raw[2]) == 1001 and raw[3] == good
    found = list(records.iter_records(path, None))
    assert [n for n, r in found] == [1, 2, 3]
    assert "longer than 1000 bytes" in str(found[1][1])
