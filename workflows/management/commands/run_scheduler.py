"""Run the scheduler: a Kafka consumer-group member applying workflow events, plus the outbox relay."""

import logging

from django.core.management.base import BaseCommand
from django.db import connection

from workflows import kafka_io, task_queue
from workflows.conf import conf
from workflows.scheduler.handler import Scheduler
from workflows.scheduler.heartbeat import Heartbeat
from workflows.scheduler.loop import ConsumerLoop
from workflows.scheduler.reconciler import Judge


class Command(BaseCommand):
    help = "Run the DAG scheduler (consumes workflow.start and task.complete; relays the outbox)."

    def handle(self, *args: object, **options: object) -> None:
        logging.getLogger(__name__).info("scheduler starting, group %s", conf().scheduler_group_id)
        task_queue.client()  # a broker that is not Redis is refused now, not after the first commit
        kafka_io.warm_up()
        # The loop closes a connection that failed (close_old_connections between turns) and
        # retries the batch; a health-check query before each batch would add a round trip to
        # every hop of every workflow.
        connection.settings_dict["CONN_HEALTH_CHECKS"] = False
        scheduler = Scheduler()
        consumer = kafka_io.consumer(
            conf().scheduler_group_id,
            list(scheduler.topics),
            on_assign=lambda _consumer, partitions: partitions and scheduler.reconciler.partitions_assigned(),
        )
        loop = ConsumerLoop(
            consumer,
            scheduler.handle_batch,
            idle=scheduler.idle,
            on_poison=scheduler.poisoned,
            give_up_s=conf().scheduler_give_up_seconds,
        )
        scheduler.ownership = lambda topic: Judge(*loop.caught_up_partitions(conf().topic(topic)))
        # Beating before the first poll joins the group: /health sees the scheduler at once.
        heartbeat = Heartbeat(loop.progress)
        heartbeat.start()
        try:
            loop.run()
        finally:
            heartbeat.stop()
