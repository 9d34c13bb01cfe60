"""The retention purge's periodic task, hourly, for Celery beat (operators change it in the admin)."""

from django.db import migrations

PURGE_TASK = "workflows.purge_expired_executions"  # workflows.tasks.PURGE_TASK, as of this migration
SCHEDULE_NAME = "Retention purge (WORKFLOW_RETENTION_DAYS)"
EXPIRE_SECONDS = 3600  # a run still queued when the next is due is dropped, not piled up


def create_schedule(apps, schema_editor):
    interval_schedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    hourly, _ = interval_schedule.objects.get_or_create(every=1, period="hours")
    periodic_task.objects.get_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "task": PURGE_TASK,
            "interval": hourly,
            "expire_seconds": EXPIRE_SECONDS,
            "description": "Deletes executions finished more than WORKFLOW_RETENTION_DAYS ago, "
            "with their nodes, events, outbox messages and Redis mirror, 500 per transaction.",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("workflows", "0003_execution_finished_idx"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
