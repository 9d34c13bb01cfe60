"""The engine's count and duration settings refuse values that would break it, naming the variable."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from workflows.conf import at_least_one, positive


def test_a_count_setting_takes_whole_numbers_of_at_least_one() -> None:
    assert at_least_one("MAX_NODES_PER_TASK", "1") == 1
    assert at_least_one("MIN_TASKS_PER_BATCH", 16) == 16


@pytest.mark.parametrize("value", ["0", "-3", "eight", "2.5", ""])
def test_a_bad_count_setting_names_the_variable_and_the_value(value: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=rf"WORKFLOW_MAX_NODES_PER_TASK .*{value!r}"):
        at_least_one("MAX_NODES_PER_TASK", value)


def test_a_duration_setting_takes_seconds_above_zero_and_names_the_variable() -> None:
    assert positive("WORKER_HEARTBEAT_SECONDS", "0.5") == 0.5
    for value in ["0", "-1", "soon", ""]:
        with pytest.raises(ImproperlyConfigured, match=rf"WORKFLOW_WORKER_DEAD_AFTER_SECONDS .*{value!r}"):
            positive("WORKER_DEAD_AFTER_SECONDS", value)
