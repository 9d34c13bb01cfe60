"""The engine's count settings refuse values that would break dispatch, naming the variable."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from workflows.conf import at_least_one


def test_a_count_setting_takes_whole_numbers_of_at_least_one() -> None:
    assert at_least_one("MAX_NODES_PER_TASK", "1") == 1
    assert at_least_one("MIN_TASKS_PER_BATCH", 16) == 16


@pytest.mark.parametrize("value", ["0", "-3", "eight", "2.5", ""])
def test_a_bad_count_setting_names_the_variable_and_the_value(value: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=rf"WORKFLOW_MAX_NODES_PER_TASK .*{value!r}"):
        at_least_one("MAX_NODES_PER_TASK", value)
