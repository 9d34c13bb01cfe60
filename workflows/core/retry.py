"""Per-node retry policy: parsed from workflow JSON, capped exponential backoff with jitter."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields

from workflows.core.templates import json_type

MAX_ATTEMPTS = 20
MAX_BACKOFF_S = 3600.0
MAX_BACKOFF_MULTIPLIER = 10.0


class RetryPolicyError(ValueError):
    """An invalid `retry` value; `field` is its JSON path so callers can say where it is."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{reason} (at {field})")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class RetryPolicy:
    """How many times a node is attempted and how long to wait between attempts."""

    max_attempts: int = 1
    backoff_seconds: float = 1.0
    backoff_multiplier: float = 2.0
    max_backoff_seconds: float = 60.0
    jitter: bool = True

    @classmethod
    def from_json(cls, obj: object, field_path: str = "retry") -> RetryPolicy:
        """Parse `3` (max_attempts) or an object of the fields; null fields take the default.

        Unknown keys are rejected: a misspelt `max_attempt` would otherwise silently mean
        "never retry".
        """
        label = field_path.rsplit(".", 1)[-1]
        if isinstance(obj, dict):
            return cls._from_object(obj, field_path, label)
        if isinstance(obj, int) and not isinstance(obj, bool):
            return cls(max_attempts=_attempts(obj, field_path, label))
        raise RetryPolicyError(
            field_path,
            f"{label} must be a number of attempts or an object, got {json_type(obj)}",
        )

    @classmethod
    def _from_object(cls, obj: dict[str, object], field_path: str, label: str) -> RetryPolicy:
        known = [spec.name for spec in fields(cls)]
        unknown = [key for key in obj if key not in known]
        if unknown:
            raise RetryPolicyError(
                f"{field_path}.{unknown[0]}",
                f"{label} has unknown setting '{unknown[0]}' (known: {', '.join(sorted(known))})",
            )

        def setting(key: str) -> tuple[object, str, str]:
            value = obj.get(key)
            default = getattr(cls, key)
            return default if value is None else value, f"{field_path}.{key}", f"{label}.{key}"

        return cls(
            max_attempts=_attempts(*setting("max_attempts")),
            backoff_seconds=_number(*setting("backoff_seconds"), 0.0, MAX_BACKOFF_S),
            backoff_multiplier=_number(*setting("backoff_multiplier"), 1.0, MAX_BACKOFF_MULTIPLIER),
            max_backoff_seconds=_number(*setting("max_backoff_seconds"), 0.0, MAX_BACKOFF_S),
            jitter=_boolean(*setting("jitter")),
        )

    def to_json(self) -> dict[str, object]:
        """Every field, explicitly, so a stored definition does not depend on today's defaults."""
        return {spec.name: getattr(self, spec.name) for spec in fields(self)}

    def delay_before(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before attempt `attempt + 1`, given that attempt `attempt` failed.

        backoff_seconds * backoff_multiplier ** (attempt - 1), capped at max_backoff_seconds;
        with jitter, a uniform 50-100 % of that, so nodes that failed together do not all
        retry at the same instant.
        """
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt}")
        try:
            delay = self.backoff_seconds * self.backoff_multiplier ** (attempt - 1)
        except OverflowError:
            delay = math.inf
        delay = min(delay, self.max_backoff_seconds)
        return delay * rng.uniform(0.5, 1.0) if self.jitter else delay


def _attempts(value: object, field: str, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RetryPolicyError(field, f"{label} must be an integer, got {json_type(value)}")
    if not 1 <= value <= MAX_ATTEMPTS:
        raise RetryPolicyError(field, f"{label} must be from 1 to {MAX_ATTEMPTS}, got {value}")
    return value


def _boolean(value: object, field: str, label: str) -> bool:
    if not isinstance(value, bool):
        raise RetryPolicyError(field, f"{label} must be true or false, got {json_type(value)}")
    return value


def _number(value: object, field: str, label: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RetryPolicyError(field, f"{label} must be a number, got {json_type(value)}")
    if not low <= value <= high:  # also rejects NaN, which compares false with everything
        raise RetryPolicyError(field, f"{label} must be from {low:g} to {high:g}, got {value!r}")
    return float(value)
