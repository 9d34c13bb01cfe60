"""The benchmark behind `python manage.py bench`: workload shapes, runner, Celery baseline, report."""
