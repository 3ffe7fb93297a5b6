"""`make bench-quick --check`: which ratios fail the thresholds."""

import math

from bench.run import check

LIMITS = {"min": {"api_bulk_vs_single": 3.0}, "max": {"worker_rss_growth": 0.5}}


def test_ratios_within_their_limits_pass():
    assert check({"api_bulk_vs_single": 3.0, "worker_rss_growth": 0.5}, LIMITS) == []


def test_a_ratio_past_its_limit_is_a_miss():
    misses = check({"api_bulk_vs_single": 2.9, "worker_rss_growth": 0.6}, LIMITS)
    assert misses == [
        "api_bulk_vs_single = 2.90, below 3.0",
        "worker_rss_growth = 0.60, above 0.5",
    ]


def test_a_ratio_that_is_not_a_number_is_a_miss():
    # A latency phase with no samples gives NaN, which compares false either way.
    misses = check({"api_bulk_vs_single": math.nan, "worker_rss_growth": math.nan}, LIMITS)
    assert len(misses) == 2
