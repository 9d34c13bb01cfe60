"""The client factory: Kafka credentials and TLS from the environment reach every role's settings,
halfway credentials are refused by name, and rediss:// URLs get the CA (no services needed)."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from workflows.clients import KAFKA_ROLES, kafka_config, redis_client
from workflows.conf import conf

SASL = {
    "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "KAFKA_SASL_MECHANISM": "scram-sha-256",
    "KAFKA_SASL_USERNAME": "workflows",
    "KAFKA_SASL_PASSWORD": "s3cret",
}


@pytest.fixture
def kafka_env(settings: Any) -> Iterator[Any]:
    """Change settings.WORKFLOWS in the test; conf() is parsed again before and after."""
    conf.cache_clear()
    yield settings
    conf.cache_clear()


def with_kafka(settings: Any, **names: str) -> None:
    settings.WORKFLOWS = {**settings.WORKFLOWS, **names}
    conf.cache_clear()


@pytest.mark.parametrize("role", sorted(KAFKA_ROLES))
def test_every_kafka_role_gets_the_credentials_and_ca(kafka_env: Any, tmp_path: Path, role: str) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("a CA")
    with_kafka(kafka_env, **SASL, KAFKA_SSL_CA_FILE=str(ca))

    config = kafka_config(role)  # type: ignore[arg-type]

    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-256"
    assert (config["sasl.username"], config["sasl.password"]) == ("workflows", "s3cret")
    assert config["ssl.ca.location"] == str(ca)
    assert config["bootstrap.servers"] == conf().kafka_bootstrap_servers


def test_plaintext_kafka_gets_no_sasl_settings(kafka_env: Any) -> None:
    with_kafka(kafka_env, KAFKA_SASL_USERNAME="ignored", KAFKA_SASL_PASSWORD="ignored")

    config = kafka_config("producer")

    assert config["security.protocol"] == "PLAINTEXT"
    assert not {key for key in config if key.startswith(("sasl.", "ssl."))}
    assert config["enable.idempotence"] is True


def test_the_sasl_password_is_not_in_the_conf_repr(kafka_env: Any) -> None:
    with_kafka(kafka_env, **SASL)

    assert "s3cret" not in repr(conf())


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS' is not one of"),
        ({**SASL, "KAFKA_SASL_MECHANISM": ""}, "needs KAFKA_SASL_MECHANISM"),
        ({**SASL, "KAFKA_SASL_MECHANISM": "GSSAPI"}, "needs KAFKA_SASL_MECHANISM"),
        ({**SASL, "KAFKA_SASL_PASSWORD": ""}, "needs KAFKA_SASL_PASSWORD"),
        ({**SASL, "KAFKA_SASL_USERNAME": "", "KAFKA_SASL_PASSWORD": ""}, "USERNAME and KAFKA_SASL_PASSWORD"),
        ({"KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"}, "KAFKA_SSL_CA_FILE='/nonexistent/ca.pem' is not"),
    ],
)
def test_a_kafka_security_setting_given_halfway_is_refused_by_name(
    kafka_env: Any, names: dict[str, str], message: str
) -> None:
    with_kafka(kafka_env, **names)

    with pytest.raises(ImproperlyConfigured, match=message):
        conf()


def test_a_rediss_url_gets_tls_with_the_ca_and_the_password(settings: Any, tmp_path: Path) -> None:
    settings.REDIS_URL = "rediss://:pa55@redis.example.com:6380/2"
    settings.REDIS_SSL_OPTIONS = {**settings.REDIS_SSL_OPTIONS, "ssl_ca_certs": str(tmp_path / "ca.pem")}

    pool = redis_client("mirror").connection_pool

    assert pool.connection_class.__name__ == "SSLConnection"
    assert pool.connection_kwargs["ssl_ca_certs"] == str(tmp_path / "ca.pem")
    assert pool.connection_kwargs["password"] == "pa55"
    assert pool.connection_kwargs["socket_timeout"] == 2.0


def test_a_redis_url_stays_plain_and_the_broker_uses_its_own_url(settings: Any) -> None:
    settings.CELERY_BROKER_URL = "redis://:other@127.0.0.1:6390/5"

    pool = redis_client("broker", timeout_s=0.5).connection_pool

    assert pool.connection_class.__name__ == "Connection"
    assert (pool.connection_kwargs["port"], pool.connection_kwargs["db"]) == (6390, 5)
    assert pool.connection_kwargs["password"] == "other"
    assert pool.connection_kwargs["socket_timeout"] == 0.5
