"""Unit tests for workflows.core.retry: parsing a retry policy and the backoff it gives."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.core.retry import RetryPolicy, RetryPolicyError

NO_JITTER = RetryPolicy(
    max_attempts=5, backoff_seconds=1.0, backoff_multiplier=2.0, max_backoff_seconds=10.0, jitter=False
)


def test_defaults_mean_a_single_attempt() -> None:
    assert RetryPolicy() == RetryPolicy(
        max_attempts=1, backoff_seconds=1.0, backoff_multiplier=2.0, max_backoff_seconds=60.0, jitter=True
    )


def test_a_bare_integer_is_max_attempts() -> None:
    assert RetryPolicy.from_json(3, "retry") == RetryPolicy(max_attempts=3)


def test_an_object_sets_each_field() -> None:
    data = {
        "max_attempts": 4,
        "backoff_seconds": 0.5,
        "backoff_multiplier": 3,
        "max_backoff_seconds": 30,
        "jitter": False,
    }

    policy = RetryPolicy.from_json(data, "retry")

    assert policy == RetryPolicy(4, 0.5, 3.0, 30.0, False)
    assert isinstance(policy.backoff_multiplier, float)


def test_missing_and_null_fields_take_the_defaults() -> None:
    assert RetryPolicy.from_json({"max_attempts": 2, "jitter": None}, "retry") == RetryPolicy(max_attempts=2)
    assert RetryPolicy.from_json({}, "retry") == RetryPolicy()


def test_to_json_round_trips() -> None:
    policy = RetryPolicy(7, 0.25, 1.5, 12.0, False)

    assert policy.to_json() == {
        "max_attempts": 7,
        "backoff_seconds": 0.25,
        "backoff_multiplier": 1.5,
        "max_backoff_seconds": 12.0,
        "jitter": False,
    }
    assert RetryPolicy.from_json(policy.to_json(), "retry") == policy


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (True, "dag.nodes[1].retry", ["retry", "boolean"]),
        ("3", "dag.nodes[1].retry", ["retry", "string"]),
        (2.0, "dag.nodes[1].retry", ["retry", "number"]),
        ([3], "dag.nodes[1].retry", ["retry", "array"]),
        (0, "dag.nodes[1].retry", ["retry", "1 to 20", "0"]),
        (21, "dag.nodes[1].retry", ["retry", "1 to 20", "21"]),
        (
            {"max_attempts": True},
            "dag.nodes[1].retry.max_attempts",
            ["retry.max_attempts", "integer", "boolean"],
        ),
        ({"max_attempts": 2.5}, "dag.nodes[1].retry.max_attempts", ["integer", "number"]),
        ({"max_attempts": 0}, "dag.nodes[1].retry.max_attempts", ["1 to 20", "0"]),
        ({"backoff_seconds": -0.1}, "dag.nodes[1].retry.backoff_seconds", ["0 to 3600", "-0.1"]),
        ({"backoff_seconds": 3601}, "dag.nodes[1].retry.backoff_seconds", ["0 to 3600", "3601"]),
        ({"backoff_seconds": "1"}, "dag.nodes[1].retry.backoff_seconds", ["number", "string"]),
        ({"backoff_seconds": False}, "dag.nodes[1].retry.backoff_seconds", ["number", "boolean"]),
        ({"backoff_seconds": math.nan}, "dag.nodes[1].retry.backoff_seconds", ["nan"]),
        ({"backoff_multiplier": 0.5}, "dag.nodes[1].retry.backoff_multiplier", ["1 to 10", "0.5"]),
        ({"backoff_multiplier": 11}, "dag.nodes[1].retry.backoff_multiplier", ["1 to 10", "11"]),
        ({"max_backoff_seconds": math.inf}, "dag.nodes[1].retry.max_backoff_seconds", ["0 to 3600", "inf"]),
        ({"jitter": "yes"}, "dag.nodes[1].retry.jitter", ["true or false", "string"]),
        ({"jitter": 1}, "dag.nodes[1].retry.jitter", ["true or false", "number"]),
        (
            {"max_attempt": 3},
            "dag.nodes[1].retry.max_attempt",
            ["unknown setting 'max_attempt'", "max_attempts"],
        ),
    ],
)
def test_invalid_values_name_the_field(data: object, field: str, words: list[str]) -> None:
    with pytest.raises(RetryPolicyError) as caught:
        RetryPolicy.from_json(data, "dag.nodes[1].retry")

    assert caught.value.field == field
    assert str(caught.value).endswith(f"(at {field})")
    for word in words:
        assert word in caught.value.reason


def test_the_error_is_a_value_error() -> None:
    assert issubclass(RetryPolicyError, ValueError)


def test_bounds_are_inclusive() -> None:
    edge = {"max_attempts": 20, "backoff_seconds": 3600, "backoff_multiplier": 10, "max_backoff_seconds": 0}

    assert RetryPolicy.from_json(edge, "retry") == RetryPolicy(20, 3600.0, 10.0, 0.0)
    assert (
        RetryPolicy.from_json({"backoff_seconds": 0, "backoff_multiplier": 1}, "retry").backoff_seconds == 0.0
    )


# --- delay_before ---------------------------------------------------------------------------


def test_delay_grows_exponentially_from_the_first_failure_and_is_capped() -> None:
    rng = random.Random(0)

    assert [NO_JITTER.delay_before(attempt, rng) for attempt in range(1, 7)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        10.0,
        10.0,
    ]


def test_no_backoff_means_no_delay() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_seconds=0, jitter=True)

    assert policy.delay_before(2, random.Random(0)) == 0.0


def test_a_huge_attempt_number_gives_the_cap_not_an_overflow() -> None:
    policy = RetryPolicy(backoff_multiplier=10.0, max_backoff_seconds=60.0, jitter=False)

    assert policy.delay_before(100_000, random.Random(0)) == 60.0


def test_attempts_start_at_one() -> None:
    with pytest.raises(ValueError):
        NO_JITTER.delay_before(0, random.Random(0))


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    policy = RetryPolicy(max_attempts=5)

    first = [policy.delay_before(attempt, random.Random(42)) for attempt in range(1, 5)]
    second = [policy.delay_before(attempt, random.Random(42)) for attempt in range(1, 5)]

    assert first == second


@given(
    st.integers(min_value=1, max_value=40),
    st.integers(),
    st.floats(min_value=0, max_value=3600),
    st.floats(min_value=1, max_value=10),
    st.floats(min_value=0, max_value=3600),
)
def test_jittered_delay_is_between_half_and_all_of_the_capped_backoff(
    attempt: int, seed: int, backoff: float, multiplier: float, cap: float
) -> None:
    jittered = RetryPolicy(20, backoff, multiplier, cap, True)
    plain = RetryPolicy(20, backoff, multiplier, cap, False)

    full = plain.delay_before(attempt, random.Random(seed))
    delay = jittered.delay_before(attempt, random.Random(seed))

    assert full == min(cap, backoff * multiplier ** (attempt - 1))
    assert 0.5 * full <= delay <= full


@given(
    st.floats(min_value=0, max_value=3600),
    st.floats(min_value=1, max_value=10),
    st.floats(min_value=0, max_value=3600),
)
def test_delay_without_jitter_never_shrinks(backoff: float, multiplier: float, cap: float) -> None:
    policy = RetryPolicy(20, backoff, multiplier, cap, False)
    delays = [policy.delay_before(attempt, random.Random(0)) for attempt in range(1, 25)]

    assert delays == sorted(delays)
    assert max(delays) <= cap
