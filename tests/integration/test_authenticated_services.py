"""The engine against a Redis that needs an ACL user's password and a Kafka that needs SASL (PLAIN on
a SASL_PLAINTEXT listener, KRaft), both private to this module: the credentials come from the
environment through workflows/clients.py, a workflow completes, and a wrong password is refused
with an error that says so."""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from workflows import health, mirror
from workflows.conf import conf
from workflows.devstack import (
    ARTIFACTS,
    KAFKA_METADATA_TIMEOUT_S,
    PrivateKafka,
    PrivateRedis,
    Stack,
    ignore_kafka_error,
    start_stack,
)

pytestmark = pytest.mark.integration

REDIS_USER = "workflows"
REDIS_PASSWORD = "redis-" + uuid.uuid4().hex
KAFKA_USER = "workflows"
KAFKA_PASSWORD = "kafka-" + uuid.uuid4().hex
BROKER_PASSWORD = "broker-" + uuid.uuid4().hex  # the broker's own login, between its listeners


@dataclass
class AclRedis(PrivateRedis):
    """A private Redis whose default user is off: only REDIS_USER with its password gets in."""

    def url_with(self, password: str) -> str:
        return f"redis://{REDIS_USER}:{password}@127.0.0.1:{self.port}/0"

    @property
    def url(self) -> str:
        return self.url_with(REDIS_PASSWORD)

    def command(self) -> list[str]:
        acl = [REDIS_USER, "on", f">{REDIS_PASSWORD}", "~*", "&*", "+@all"]
        return [*super().command(), "--user", "default", "off", "--user", *acl]


@dataclass
class SaslKafka(PrivateKafka):
    """A private KRaft broker whose client listener is SASL_PLAINTEXT with PLAIN logins."""

    def properties(self) -> str:
        jaas = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="broker" password="{BROKER_PASSWORD}" '
            f'user_broker="{BROKER_PASSWORD}" user_{KAFKA_USER}="{KAFKA_PASSWORD}";'
        )
        plain = (
            super()
            .properties()
            .replace("PLAINTEXT://", "SASL_PLAINTEXT://")
            .replace("inter.broker.listener.name=PLAINTEXT", "inter.broker.listener.name=SASL_PLAINTEXT")
            .replace(",PLAINTEXT:PLAINTEXT", ",SASL_PLAINTEXT:SASL_PLAINTEXT")
        )
        return plain + "\n".join(
            [
                "sasl.enabled.mechanisms=PLAIN",
                "sasl.mechanism.inter.broker.protocol=PLAIN",
                f"listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas}",
                "",
            ]
        )

    def answers(self) -> bool:
        return broker_answers(self.bootstrap, {**LIBRDKAFKA_SASL, "sasl.password": KAFKA_PASSWORD})


LIBRDKAFKA_SASL = {
    "security.protocol": "SASL_PLAINTEXT",
    "sasl.mechanism": "PLAIN",
    "sasl.username": KAFKA_USER,
}


def broker_answers(bootstrap: str, credentials: dict[str, str]) -> bool:
    """A metadata request with these credentials lists a broker."""
    config = {"bootstrap.servers": bootstrap, **credentials, "log_level": 0, "error_cb": ignore_kafka_error}
    try:
        return bool(AdminClient(config).list_topics(timeout=KAFKA_METADATA_TIMEOUT_S).brokers)
    except KafkaException:
        return False


def kafka_env(bootstrap: str, password: str) -> dict[str, str]:
    """The engine's Kafka variables (environment and WORKFLOWS keys alike) for KAFKA_USER."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": KAFKA_USER,
        "KAFKA_SASL_PASSWORD": password,
    }


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[AclRedis, SaslKafka]]:
    directory = ARTIFACTS / "authenticated" / uuid.uuid4().hex[:10]
    redis_server, kafka = AclRedis(Path(directory / "redis")), SaslKafka(Path(directory / "kafka"))
    try:
        kafka.launch()
        redis_server.start()
        kafka.wait_ready()
        yield redis_server, kafka
    finally:
        redis_server.stop()
        kafka.stop()
        kafka.remove_data()


@pytest.fixture(scope="module")
def authenticated_stack(services: tuple[AclRedis, SaslKafka]) -> Iterator[Stack]:
    redis_server, kafka = services
    running = start_stack(
        extra_env={
            "REDIS_URL": redis_server.url,
            "CELERY_BROKER_URL": redis_server.url,
            **kafka_env(kafka.bootstrap, KAFKA_PASSWORD),
        }
    )
    yield running
    running.close()


@pytest.fixture
def engine_settings(settings: Any) -> Iterator[Any]:
    """This process's settings, changed by the test; the cached clients and conf are dropped."""
    yield settings
    for cached in (conf, mirror.client, health.kafka_admin):
        cached.cache_clear()


def test_a_workflow_completes_with_credentials_from_the_environment(authenticated_stack: Stack) -> None:
    workflow = {
        "name": "Authenticated",
        "dag": {
            "nodes": [
                {"id": "A", "handler": "input", "config": {"topic": "locks"}},
                {"id": "B", "handler": "llm", "dependencies": ["A"], "config": {"prompt": "{{ A.topic }}"}},
                {"id": "C", "handler": "output", "dependencies": ["B"], "config": {}},
            ]
        },
    }

    state = authenticated_stack.wait_finished(authenticated_stack.submit(workflow, trigger=True))

    assert state["status"] == "COMPLETED", state
    body = authenticated_stack.health().json()
    assert {name: body["dependencies"][name]["status"] for name in ("redis", "kafka")} == {
        "redis": "up",
        "kafka": "up",
    }, body


def test_the_services_refuse_clients_without_credentials(services: tuple[AclRedis, SaslKafka]) -> None:
    redis_server, kafka = services

    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=redis_server.port, socket_timeout=2).ping()
    assert not broker_answers(kafka.bootstrap, {})


def test_a_wrong_redis_password_is_reported_by_health_saying_so(
    services: tuple[AclRedis, SaslKafka], engine_settings: Any
) -> None:
    redis_server, _ = services
    engine_settings.REDIS_URL = redis_server.url_with("wrong-password")
    mirror.client.cache_clear()

    report = health.probe(health.check_redis)

    assert report["status"] == "down"
    assert "invalid username-password pair" in report["error"], report


def test_a_wrong_kafka_password_is_reported_by_health_saying_so(
    services: tuple[AclRedis, SaslKafka], engine_settings: Any
) -> None:
    _, kafka = services
    engine_settings.WORKFLOWS = {**engine_settings.WORKFLOWS, **kafka_env(kafka.bootstrap, "wrong-password")}
    conf.cache_clear()
    health.kafka_admin.cache_clear()

    report = health.probe(health.check_kafka)

    assert report["status"] == "down"
    assert "Authentication failed: Invalid username or password" in report["error"], report
