"""One factory per client: librdkafka settings per role and Redis clients per purpose, each with the
credentials and TLS the environment gives (KAFKA_SECURITY_PROTOCOL…, rediss:// and REDIS_SSL_CA_FILE)."""

from typing import Any, Literal

import redis
from django.conf import settings

from workflows.conf import conf

KafkaRole = Literal["producer", "consumer", "admin", "probe"]
RedisPurpose = Literal["mirror", "broker"]
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 2_000
PROBE_TIMEOUT_MS = 2_000
REDIS_TIMEOUT_S = 2.0

# What each kind of client adds to the connection settings.
KAFKA_ROLES: dict[str, dict[str, Any]] = {
    # The one producer per process: ordered, not duplicated on retries, sent at once.
    "producer": {
        "enable.idempotence": True,
        "partitioner": "consistent_random",
        "acks": "all",
        "linger.ms": 0,
        "message.timeout.ms": 30000,
    },
    # The scheduler's consumer: commits only when told to, after the batch's effects are durable.
    "consumer": {
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 10,
        "partition.assignment.strategy": "cooperative-sticky",
        # A scheduler that dies hands its partitions over within seconds, not librdkafka's 45 s.
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
    },
    # Topic creation and deletion.
    "admin": {},
    # /health and /metrics: answer fast when a broker does not.
    "probe": {"socket.timeout.ms": PROBE_TIMEOUT_MS},
}


def kafka_connection() -> dict[str, Any]:
    """The brokers, and the credentials and TLS to reach them."""
    engine = conf()
    config: dict[str, Any] = {
        "bootstrap.servers": engine.kafka_bootstrap_servers,
        "socket.nagle.disable": True,
        "security.protocol": engine.kafka_security_protocol,
    }
    if engine.kafka_security_protocol.startswith("SASL_"):
        config["sasl.mechanism"] = engine.kafka_sasl_mechanism
        config["sasl.username"] = engine.kafka_sasl_username
        config["sasl.password"] = engine.kafka_sasl_password
    if engine.kafka_ssl_ca_file:
        config["ssl.ca.location"] = engine.kafka_ssl_ca_file
    return config


def kafka_config(role: KafkaRole) -> dict[str, Any]:
    """librdkafka settings for a client of `role`; callers add only what is theirs (a group id, a
    callback)."""
    return {**kafka_connection(), **KAFKA_ROLES[role]}


def redis_url(purpose: RedisPurpose) -> str:
    """The mirror's Redis (REDIS_URL) or the Celery broker's (CELERY_BROKER_URL)."""
    return settings.REDIS_URL if purpose == "mirror" else settings.CELERY_BROKER_URL


def redis_client(purpose: RedisPurpose, timeout_s: float = REDIS_TIMEOUT_S) -> redis.Redis:
    """A Redis client (a connection pool; safe to share between threads) with the URL's password and,
    for rediss://, the TLS settings Django's cache and Celery use too."""
    url = redis_url(purpose)
    tls = settings.REDIS_SSL_OPTIONS if url.startswith("rediss://") else {}
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, **tls)
