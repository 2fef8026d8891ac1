"""`python -m mtd_trainer.serving`'s limit flags: each `Limits` field is a flag with its
default, reaches `Limits`, and a value below 1 is one `error:` line naming it (exit 2)."""

from __future__ import annotations

import dataclasses

import pytest

from mtd_trainer.serving.__main__ import LIMIT_FLAGS, main, parser
from mtd_trainer.serving.limits import Limits

pytestmark = pytest.mark.serving


def test_every_limit_flag_defaults_to_limits() -> None:
    args = parser().parse_args(["--base-model", "m"])
    for name in LIMIT_FLAGS:
        assert getattr(args, name) == getattr(Limits(), name)
    tunable = {f.name for f in dataclasses.fields(Limits)} - {"label_batch"}
    assert set(LIMIT_FLAGS) == tunable


def test_limit_flags_are_parsed_as_integers() -> None:
    argv = ["--base-model", "m", "--max-body-bytes", "10", "--max-labels", "3"]
    argv += ["--max-label-chars", "7", "--max-concurrent-requests", "2"]
    args = parser().parse_args(argv)
    limits = Limits(**{name: getattr(args, name) for name in LIMIT_FLAGS})
    assert limits == Limits(
        max_body_bytes=10, max_labels=3, max_label_chars=7, max_concurrent_requests=2
    )


@pytest.mark.parametrize("flag", sorted(LIMIT_FLAGS))
def test_a_limit_below_one_is_refused_before_loading(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--base-model", "/nonexistent", "--" + flag.replace("_", "-"), "0"])
    assert code == 2
    assert f"error: {flag} must be at least 1, got 0" in capsys.readouterr().err
