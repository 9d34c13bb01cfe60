"""Durations: measured between two moments, never negative, shown compactly."""

from datetime import UTC, datetime, timedelta

import pytest

from workflows.durations import format_duration, seconds_between

START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0421, "0.042s"), (12.34, "12.3s"), (61, "1m01s"), (3725, "1h02m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_seconds_between_is_none_until_both_moments_are_known_and_never_negative() -> None:
    assert seconds_between(START, START + timedelta(seconds=1.5)) == 1.5
    assert seconds_between(START, None) is None
    assert seconds_between(None, START) is None
    assert seconds_between(START + timedelta(seconds=1), START) == 0.0  # two hosts' clocks
