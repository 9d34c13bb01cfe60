"""Signatures of the messages between schedulers and workers (issue #12): what one process signs the
other accepts; a changed byte, another key, another purpose or no signature at all is refused."""

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from workflows import signatures, task_queue
from workflows.conf import conf
from workflows.messages import RUN_NODES_TASK, SIGNATURE_HEADER, TASK_COMPLETE, WORKFLOW_START, InvalidMessage

VALUE = b'{"execution_id":"0b6f7f3e-2c1d-4c55-9f5a-3b0b8e2c9f11","node_id":"A","attempt":1}'
OTHER_KEY = "another-key-of-at-least-thirty-two-characters"


@contextmanager
def signing_key(key: str) -> Iterator[None]:
    """The configuration of a process holding this key."""
    conf.cache_clear()
    try:
        with override_settings(WORKFLOWS={**settings.WORKFLOWS, "SIGNING_KEY": key}):
            yield
    finally:
        conf.cache_clear()


def reason(purpose: str, value: bytes, signature: object) -> str:
    with pytest.raises(InvalidMessage) as refused:
        signatures.check(purpose, value, signature)
    return refused.value.reason


def test_what_is_signed_verifies_as_sent() -> None:
    signature = signatures.sign(TASK_COMPLETE, VALUE)

    assert len(signature) == 64 and int(signature, 16) >= 0
    signatures.check(TASK_COMPLETE, VALUE, signature)
    signatures.check(TASK_COMPLETE, VALUE, signature.encode())  # as a Kafka header carries it


def test_one_changed_byte_is_refused() -> None:
    signature = signatures.sign(TASK_COMPLETE, VALUE)
    changed = VALUE.replace(b'"attempt":1', b'"attempt":2')

    assert reason(TASK_COMPLETE, changed, signature) == "bad_signature"


def test_a_signature_made_for_one_topic_is_refused_on_another() -> None:
    """A signed report copied to workflow.start would otherwise pass as a start (it has an execution id)."""
    assert reason(WORKFLOW_START, VALUE, signatures.sign(TASK_COMPLETE, VALUE)) == "bad_signature"


@pytest.mark.parametrize("missing", [None, "", b""])
def test_no_signature_is_refused_as_missing(missing: object) -> None:
    assert reason(TASK_COMPLETE, VALUE, missing) == "missing_signature"


def test_a_signature_garbled_or_not_ascii_is_refused_not_raised() -> None:
    assert reason(TASK_COMPLETE, VALUE, "é" * 64) == "bad_signature"
    assert reason(TASK_COMPLETE, VALUE, b"\xff" * 64) == "bad_signature"


def test_a_signature_made_with_another_key_is_refused() -> None:
    with signing_key(OTHER_KEY):
        forged = signatures.sign(TASK_COMPLETE, VALUE)

    assert reason(TASK_COMPLETE, VALUE, forged) == "bad_signature"


def test_the_header_of_a_kafka_message_is_found_among_others() -> None:
    headers = [("trace", b"x"), *signatures.header(TASK_COMPLETE, VALUE)]

    assert signatures.verified(TASK_COMPLETE, VALUE, headers) == VALUE
    with pytest.raises(InvalidMessage, match=SIGNATURE_HEADER):
        signatures.verified(TASK_COMPLETE, VALUE, [("trace", b"x")])
    with pytest.raises(InvalidMessage, match=SIGNATURE_HEADER):
        signatures.verified(TASK_COMPLETE, VALUE, None)


def test_a_celery_task_is_signed_over_the_exact_bytes_of_its_body() -> None:
    """The worker checks the body as it comes off the queue (workers/signed_request.py)."""
    payload = {"execution_id": "0b6f7f3e-2c1d-4c55-9f5a-3b0b8e2c9f11", "node_id": "A", "attempt": 1}
    entry = json.loads(task_queue.message([payload]))
    body = base64.b64decode(entry["body"])

    signatures.check(RUN_NODES_TASK, body, entry["headers"][SIGNATURE_HEADER])
    assert reason("workers.run_node", body, entry["headers"][SIGNATURE_HEADER]) == "bad_signature"


@pytest.mark.parametrize("key", ["", "short-key"])
def test_a_missing_or_short_signing_key_is_refused_naming_the_variable(key: str) -> None:
    with signing_key(key), pytest.raises(ImproperlyConfigured, match="WORKFLOW_SIGNING_KEY"):
        conf()
