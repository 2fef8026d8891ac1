"""`mtd run`'s closing queries read the first example as the trainer reads data: a byte
order mark (allowed by the record rule) no longer crashes the run after it served."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from mtd_operator.local.asking import ask


class Client:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def predict(self, task: str, text: str):
        self.asked.append((task, text))
        return SimpleNamespace(adapter="binary-1a2b", output="pos")


def test_a_byte_order_mark_and_blank_lines_are_read_as_the_trainer_reads_them(
    tmp_path: Path, capsys
) -> None:
    data = tmp_path / "eval.jsonl"
    data.write_bytes(b'\xef\xbb\xbf{"input": "great film", "output": "pos"}\n\n')
    client = Client()
    ask(client, "sentiment", "eval.jsonl", tmp_path)
    assert client.asked == [("sentiment", "great film")]
    assert "expected 'pos'" in capsys.readouterr().out
