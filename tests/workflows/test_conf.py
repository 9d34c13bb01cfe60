"""The engine's settings refuse values that would break it, naming the variable."""

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from workflows.conf import KAFKA_MESSAGE_MAX_BYTES, EngineConf, at_least_one, conf, positive, write_rate


def test_a_count_setting_takes_whole_numbers_of_at_least_one() -> None:
    assert at_least_one("MAX_NODES_PER_TASK", "1") == 1
    assert at_least_one("MIN_TASKS_PER_BATCH", 16) == 16


@pytest.mark.parametrize("value", ["0", "-3", "eight", "2.5", ""])
def test_a_bad_count_setting_names_the_variable_and_the_value(value: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=rf"WORKFLOW_MAX_NODES_PER_TASK .*{value!r}"):
        at_least_one("MAX_NODES_PER_TASK", value)


def test_the_default_size_limits_fit_in_a_kafka_message() -> None:
    limits = conf()

    assert limits.max_config_bytes <= limits.max_resolved_config_bytes < KAFKA_MESSAGE_MAX_BYTES
    assert limits.max_output_bytes < KAFKA_MESSAGE_MAX_BYTES


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_RESOLVED_CONFIG_BYTES", "2000000"),
        ("MAX_OUTPUT_BYTES", "1000000"),
        ("MAX_CONFIG_BYTES", "999000"),
    ],
)
def test_a_size_limit_a_kafka_message_cannot_hold_is_refused(name: str, value: str) -> None:
    raw = {**settings.WORKFLOWS, name: value}
    if name == "MAX_CONFIG_BYTES":
        raw["MAX_RESOLVED_CONFIG_BYTES"] = value

    with (
        override_settings(WORKFLOWS=raw),
        pytest.raises(ImproperlyConfigured, match=rf"WORKFLOW_{name}={value}"),
    ):
        parsed_conf()


def test_a_task_payload_bound_redis_cannot_store_is_refused() -> None:
    raw = {**settings.WORKFLOWS, "MAX_NODE_PAYLOAD_BYTES": str(64 * 1024 * 1024)}

    with override_settings(WORKFLOWS=raw), pytest.raises(ImproperlyConfigured, match="Redis"):
        parsed_conf()


def parsed_conf() -> EngineConf:
    """The configuration as a process starting with the overridden settings would parse it."""
    conf.cache_clear()
    try:
        return conf()
    finally:
        conf.cache_clear()


def test_a_duration_setting_takes_seconds_above_zero_and_names_the_variable() -> None:
    assert positive("WORKER_HEARTBEAT_SECONDS", "0.5") == 0.5
    for value in ["0", "-1", "soon", ""]:
        with pytest.raises(ImproperlyConfigured, match=rf"WORKFLOW_WORKER_DEAD_AFTER_SECONDS .*{value!r}"):
            positive("WORKER_DEAD_AFTER_SECONDS", value)


@pytest.mark.parametrize(("heartbeat", "dead_after"), [("1", "2.5"), ("4", "10")])
def test_a_dead_after_time_under_three_heartbeats_is_refused_naming_both(
    heartbeat: str, dead_after: str
) -> None:
    raw = {
        **settings.WORKFLOWS,
        "WORKER_HEARTBEAT_SECONDS": heartbeat,
        "WORKER_DEAD_AFTER_SECONDS": dead_after,
    }

    with (
        override_settings(WORKFLOWS=raw),
        pytest.raises(
            ImproperlyConfigured,
            match=rf"DEAD_AFTER_SECONDS={dead_after} .*WORKFLOW_WORKER_HEARTBEAT_SECONDS={heartbeat}",
        ),
    ):
        parsed_conf()


def test_a_dead_after_time_of_three_heartbeats_is_accepted() -> None:
    raw = {**settings.WORKFLOWS, "WORKER_HEARTBEAT_SECONDS": "2", "WORKER_DEAD_AFTER_SECONDS": "6"}

    with override_settings(WORKFLOWS=raw):
        assert parsed_conf().worker_dead_after_seconds == 6.0


def test_a_write_rate_takes_requests_per_period() -> None:
    assert [write_rate(rate) for rate in ("600/min", " 5/s ", "10000/day")] == ["600/min", "5/s", "10000/day"]
    for value in ["600", "600/fortnight", "0/min", "-1/min", "many/min", "600/ min", ""]:
        with pytest.raises(ImproperlyConfigured, match=rf"WORKFLOWS_API_WRITE_RATE .*{value!r}"):
            write_rate(value)
