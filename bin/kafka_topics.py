#!/usr/bin/env python3
"""Create the engine's Kafka topics (idempotently), or wait until a broker answers.

Used by bin/services, run with the project venv's python (needs confluent-kafka):

    kafka_topics.py --wait 90       # exit 0 once a metadata request lists a broker, 1 at the deadline
    kafka_topics.py                 # create the topics: workflow.start, task.dispatch, task.complete
                                    # and workflow.dead_letter

Defaults come from the environment: KAFKA_BOOTSTRAP_SERVERS (else 127.0.0.1:$KAFKA_PORT),
KAFKA_TOPIC_PREFIX, KAFKA_PARTITIONS.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

TOPICS = ("workflow.start", "task.dispatch", "task.complete", "workflow.dead_letter")


def _quiet(_err: KafkaError) -> None:
    """Swallow librdkafka's connection errors while the broker is still starting."""


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "error_cb": _quiet})


def wait_ready(client: AdminClient, seconds: float) -> bool:
    """Poll a real metadata request until it lists at least one broker, or the deadline passes."""
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            if client.list_topics(timeout=min(2.0, max(remaining, 0.1))).brokers:
                return True
        except KafkaException:
            pass
        time.sleep(0.2)


def create_topics(client: AdminClient, names: list[str], partitions: int, replication: int) -> bool:
    """Create the topics; ones that already exist are fine. True when all of them exist."""
    new = [NewTopic(name, num_partitions=partitions, replication_factor=replication) for name in names]
    ok = True
    for name, future in client.create_topics(new, operation_timeout=30, request_timeout=30).items():
        try:
            future.result()
            print(f"kafka topic {name}: created ({partitions} partitions)")
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                print(f"kafka topic {name}: exists")
            else:
                print(f"kafka topic {name}: FAILED: {err.str()}", file=sys.stderr)
                ok = False
    return ok


def main(argv: list[str] | None = None) -> int:
    default_bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or (
        f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
    )
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", default=default_bootstrap)
    parser.add_argument("--prefix", default=os.environ.get("KAFKA_TOPIC_PREFIX", ""))
    parser.add_argument("--partitions", type=int, default=int(os.environ.get("KAFKA_PARTITIONS", "3")))
    parser.add_argument("--replication", type=int, default=1)
    parser.add_argument("--wait", type=float, metavar="SECONDS", help="only wait until the broker answers")
    args = parser.parse_args(argv)

    client = admin_client(args.bootstrap)
    if args.wait is not None:
        return 0 if wait_ready(client, args.wait) else 1
    if not wait_ready(client, 30):
        print(f"kafka at {args.bootstrap} does not answer metadata requests", file=sys.stderr)
        return 1
    names = [args.prefix + topic for topic in TOPICS]
    return 0 if create_topics(client, names, args.partitions, args.replication) else 1


if __name__ == "__main__":
    sys.exit(main())
