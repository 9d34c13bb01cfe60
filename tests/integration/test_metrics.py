"""/metrics on the real stack: executions by status, the Celery queue's depth, the scheduler's lag."""

from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from devtools.devstack import Stack, wait_until

LAG_DEADLINE_S = 30.0
PARTITIONS = 3  # start_stack creates the topics with three partitions
SCHEDULER_TOPICS = ("workflow.start", "task.complete")


def scrape(stack: Stack) -> dict[str, list[Any]]:
    response = requests.get(stack.url("/metrics"), timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def test_metrics_after_a_workflow_ran(stack: Stack) -> None:
    workflow = {
        "name": "Metrics",
        "dag": {
            "nodes": [
                {"id": "A", "handler": "input", "config": {"topic": "cats"}},
                {"id": "B", "handler": "llm", "dependencies": ["A"], "config": {"prompt": "{{ A.topic }}"}},
            ]
        },
    }
    execution_id = stack.submit(workflow, trigger=True)
    assert stack.wait_finished(execution_id)["status"] == "COMPLETED"

    def caught_up() -> dict[str, list[Any]] | None:
        """A scrape in which the scheduler has committed everything it read."""
        samples = scrape(stack)
        lag = samples.get("workflows_scheduler_consumer_lag", [])
        return samples if lag and all(sample.value == 0 for sample in lag) else None

    samples = wait_until(caught_up, LAG_DEADLINE_S, "the scheduler's consumer lag to reach 0")

    lag = {(s.labels["topic"], s.labels["partition"]) for s in samples["workflows_scheduler_consumer_lag"]}
    prefix = stack.env["KAFKA_TOPIC_PREFIX"]
    assert lag == {(prefix + topic, str(p)) for topic in SCHEDULER_TOPICS for p in range(PARTITIONS)}

    executions = {s.labels["status"]: s.value for s in samples["workflows_executions"]}
    assert set(executions) == {"PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"}
    assert executions["COMPLETED"] >= 1

    depth = {s.labels["queue"]: s.value for s in samples["workflows_celery_queue_depth"]}
    assert set(depth) == {stack.env["CELERY_QUEUE"]} and depth[stack.env["CELERY_QUEUE"]] >= 0

    up = {s.labels["source"]: s.value for s in samples["workflows_metrics_source_up"]}
    assert up == {"database": 1, "redis": 1, "broker": 1, "kafka": 1}
