#!/usr/bin/env python3
"""Wait until a Kafka broker answers a metadata request (bin/services, before and after starting one).

Run with the project venv's python (needs confluent-kafka):

    kafka_wait.py --wait 90       # exit 0 once a metadata request lists a broker, 1 at the deadline

The topics are created by `manage.py create_topics`, from the code's own list. Defaults come from
the environment: KAFKA_BOOTSTRAP_SERVERS (else 127.0.0.1:$KAFKA_PORT).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient


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


def main(argv: list[str] | None = None) -> int:
    default_bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or (
        f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
    )
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", default=default_bootstrap)
    parser.add_argument("--wait", type=float, metavar="SECONDS", required=True, help="the deadline")
    args = parser.parse_args(argv)
    return 0 if wait_ready(admin_client(args.bootstrap), args.wait) else 1


if __name__ == "__main__":
    sys.exit(main())
