"""The one Celery app of the project, configured from Django settings (CELERY_* names)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workflowsite.settings")

app = Celery("workflowsite")
app.config_from_object("django.conf:settings", namespace="CELERY")


def task_packages() -> list[str]:
    """The packages whose `tasks` module workers register: the benchmark's (devtools) only where
    the settings install that app, so production workers register no benchmark task."""
    from django.conf import settings

    return ["workers", "workflows", *(["devtools"] if "devtools" in settings.INSTALLED_APPS else [])]


app.autodiscover_tasks(task_packages)
