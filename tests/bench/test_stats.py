import math

from bench.stats import median, percentile


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0
    assert math.isnan(percentile([], 50))


def test_median_ignores_nan() -> None:
    assert median([1.0, math.nan, 3.0]) == 2.0
    assert math.isnan(median([math.nan]))
