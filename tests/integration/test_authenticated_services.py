"""The engine against a Redis that speaks only TLS and lets in only an ACL user, and a Kafka that needs
SASL (PLAIN on a SASL_PLAINTEXT listener, KRaft), both private to this module: the credentials and
the CA come from the environment through workflows/clients.py, a workflow completes, and a wrong
password is refused with an error that says so."""

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from devtools.devstack import (
    ARTIFACTS,
    KAFKA_METADATA_TIMEOUT_S,
    PrivateKafka,
    PrivateRedis,
    Stack,
    ignore_kafka_error,
    start_stack,
)
from workflows import health, mirror
from workflows.conf import conf

pytestmark = pytest.mark.integration

REDIS_USER = "workflows"
REDIS_PASSWORD = "redis-" + uuid.uuid4().hex
KAFKA_USER = "workflows"
KAFKA_PASSWORD = "kafka-" + uuid.uuid4().hex
BROKER_PASSWORD = "broker-" + uuid.uuid4().hex  # the broker's own login, between its listeners


def make_certificates(directory: Path) -> None:
    """A CA (ca.pem) and a certificate for 127.0.0.1 signed by it (server.pem, server.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for command in (
        "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout ca.key -out ca.pem "
        "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
        "req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr",
        "x509 -req -days 1 -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -extfile san.ext "
        "-out server.pem",
    ):
        subprocess.run(["openssl", *command.split()], cwd=directory, check=True, capture_output=True)


@dataclass
class SecureRedis(PrivateRedis):
    """A private Redis on a TLS port only, whose default user is off: only REDIS_USER with its
    password gets in."""

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def url_with(self, password: str) -> str:
        return f"rediss://{REDIS_USER}:{password}@127.0.0.1:{self.port}/0"

    @property
    def url(self) -> str:
        return self.url_with(REDIS_PASSWORD)

    def prepare(self) -> None:
        super().prepare()
        make_certificates(self.directory)

    def command(self) -> list[str]:
        tls = ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]  # a later --port wins
        tls += ["--tls-cert-file", "server.pem", "--tls-key-file", "server.key"]
        acl = ["--user", REDIS_USER, "on", f">{REDIS_PASSWORD}", "~*", "&*", "+@all"]
        return [*super().command(), *tls, "--tls-ca-cert-file", "ca.pem", "--user", "default", "off", *acl]

    def answers(self) -> bool:
        try:
            client = redis.Redis.from_url(self.url, ssl_ca_certs=str(self.ca_file), socket_timeout=1)
            return bool(client.ping())
        except redis.RedisError:
            return False


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
def services() -> Iterator[tuple[SecureRedis, SaslKafka]]:
    directory = ARTIFACTS / "authenticated" / uuid.uuid4().hex[:10]
    redis_server, kafka = SecureRedis(Path(directory / "redis")), SaslKafka(Path(directory / "kafka"))
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
def authenticated_stack(services: tuple[SecureRedis, SaslKafka]) -> Iterator[Stack]:
    redis_server, kafka = services
    running = start_stack(
        extra_env={
            "REDIS_URL": redis_server.url,
            "CELERY_BROKER_URL": redis_server.url,
            "REDIS_SSL_CA_FILE": str(redis_server.ca_file),
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


def test_the_services_refuse_clients_without_credentials(services: tuple[SecureRedis, SaslKafka]) -> None:
    redis_server, kafka = services

    with pytest.raises(redis.AuthenticationError):
        redis.Redis("127.0.0.1", redis_server.port, ssl=True, ssl_ca_certs=str(redis_server.ca_file)).ping()
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis.Redis.from_url(redis_server.url, socket_timeout=2).ping()  # the system's CAs
    assert not broker_answers(kafka.bootstrap, {})


def test_a_wrong_redis_password_is_reported_by_health_saying_so(
    services: tuple[SecureRedis, SaslKafka], engine_settings: Any
) -> None:
    redis_server, _ = services
    engine_settings.REDIS_URL = redis_server.url_with("wrong-password")
    ca = str(redis_server.ca_file)
    engine_settings.REDIS_SSL_OPTIONS = {**engine_settings.REDIS_SSL_OPTIONS, "ssl_ca_certs": ca}
    mirror.client.cache_clear()

    report = health.probe(health.check_redis)

    assert report["status"] == "down"
    assert "invalid username-password pair" in report["error"], report


def test_a_wrong_kafka_password_is_reported_by_health_saying_so(
    services: tuple[SecureRedis, SaslKafka], engine_settings: Any
) -> None:
    _, kafka = services
    engine_settings.WORKFLOWS = {**engine_settings.WORKFLOWS, **kafka_env(kafka.bootstrap, "wrong-password")}
    conf.cache_clear()
    health.kafka_admin.cache_clear()

    report = health.probe(health.check_kafka)

    assert report["status"] == "down"
    assert "Authentication failed: Invalid username or password" in report["error"], report
