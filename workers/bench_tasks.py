"""No-op Celery tasks for the benchmark's bare-canvas baseline (`python manage.py bench`)."""

from celery import shared_task

BENCH_NOOP_TASK = "workers.bench_noop"


@shared_task(name=BENCH_NOOP_TASK, ignore_result=False)
def bench_noop() -> None:
    """Do nothing: a canvas of these measures Celery's own cost per task.

    Results are stored (unlike run_node's) because chains and chords are awaited through them.
    """
