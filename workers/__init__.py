"""Node handlers and the Celery tasks that run them.

The Celery app autodiscovers only `workers.tasks`; the benchmark's no-op task is imported here so
the same worker processes register it.
"""

from workers import bench_tasks

__all__ = ("bench_tasks",)
