"""The benchmarks' percentile: interpolated, and refusing what it cannot answer."""

from __future__ import annotations

import pytest

from bench.stats import percentile


def test_percentile_interpolates_between_order_statistics():
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.9) == pytest.approx(4.6)
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([1.0, 9.0], 0.0) == 1.0 and percentile([1.0, 9.0], 1.0) == 9.0


@pytest.mark.parametrize(("values", "q"), [([], 0.5), ([1.0], 1.5), ([1.0], -0.1)])
def test_percentile_refuses_bad_input(values, q):
    with pytest.raises(ValueError):
        percentile(values, q)
