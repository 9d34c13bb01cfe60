"""The Redis mirror's lifetime: a finished execution leaves it WORKFLOW_MIRROR_TTL_SECONDS after
it finished, whatever reads it gets; a running one keeps it."""

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from workflows import mirror, selectors
from workflows.conf import conf
from workflows.models import Execution, NodeRun

MakeExecution = Callable[..., Execution]  # tests/workflows/conftest.py
DAY_S = 24 * 3600
SLACK_S = 60  # the test's own duration, generously


@pytest.fixture(autouse=True)
def forget_mirrors(db: None, test_redis: None) -> Iterator[None]:
    yield
    keys = [mirror.key(pk) for pk in Execution.objects.values_list("pk", flat=True)]
    if keys:
        mirror.client().delete(*keys)


def ttl(execution: Execution) -> int:
    return mirror.client().ttl(mirror.key(execution.pk))


def test_the_default_lifetime_is_a_day() -> None:
    assert conf().mirror_ttl_seconds == DAY_S


def test_a_finished_execution_leaves_the_mirror_its_ttl_after_it_finished(
    make_execution: MakeExecution,
) -> None:
    finished = make_execution("COMPLETED", 0.5)

    mirror.publish([(finished, [])])

    assert DAY_S / 2 - SLACK_S < ttl(finished) <= DAY_S / 2


def test_a_running_execution_keeps_its_mirror(make_execution: MakeExecution) -> None:
    running = make_execution("RUNNING", None)

    mirror.publish([(running, [])])

    assert ttl(running) > conf().mirror_ttl_seconds


def test_a_read_does_not_mirror_an_execution_finished_longer_ago_than_the_ttl(
    make_execution: MakeExecution,
) -> None:
    old = make_execution("COMPLETED", 2)

    state = selectors.execution_status(old.pk)

    assert state.summary["status"] == "COMPLETED" and state.node_states == {"a": "PENDING"}
    assert not mirror.client().exists(mirror.key(old.pk))


def test_a_read_rebuilds_a_missing_mirror_only_until_the_ttl_after_it_finished(
    make_execution: MakeExecution,
) -> None:
    recent = make_execution("FAILED", 23 / 24)

    selectors.execution_status(recent.pk)

    assert 3600 - SLACK_S < ttl(recent) <= 3600
    assert mirror.read(recent.pk) is not None


def test_reading_a_partial_mirror_does_not_extend_it(make_execution: MakeExecution) -> None:
    """A read that completes a partial mirror (a worker's claim alone, say) keeps its expiry."""
    finished = make_execution("CANCELLED", 0.5)
    mirror.publish([(finished, [])])  # the summary only: the node is missing
    mirror.client().expire(mirror.key(finished.pk), 100)

    selectors.execution_status(finished.pk)

    assert len(mirror.read(finished.pk)[1]) == 1
    assert 0 < ttl(finished) <= 100


def test_a_running_execution_read_meanwhile_keeps_the_expiry_its_finish_gave(
    make_execution: MakeExecution,
) -> None:
    """A read that saw it running, applied after the scheduler mirrored its finish, must not give
    the finished execution a running one's lifetime."""
    execution = make_execution("RUNNING", None)
    nodes = list(NodeRun.objects.filter(execution=execution))
    execution.status, execution.finished_at = "COMPLETED", timezone.now() - timedelta(hours=12)
    mirror.publish([(execution, [])])  # the scheduler's write of the finish

    stale = Execution.objects.get(pk=execution.pk)  # still RUNNING, as the read saw it
    mirror.fill_missing(stale, nodes)

    assert 0 < ttl(execution) <= DAY_S / 2
