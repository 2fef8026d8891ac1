"""Formatting shared by the benchmark reports."""

from __future__ import annotations


def fmt(value: float | None, digits: int = 3) -> str:
    """A figure for a table; a dash where there is none."""
    return "–" if value is None else f"{value:.{digits}f}"
