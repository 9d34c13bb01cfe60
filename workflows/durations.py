"""Durations: the seconds between two moments, and how the admin and the commands show them."""

from datetime import datetime


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from start to end; never negative, since the two may come from different hosts' clocks."""
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def format_duration(seconds: float) -> str:
    """`0.042s`, `12.3s`, `4m05s`, `2h03m`."""
    if seconds < 10:
        return f"{seconds:.3f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
