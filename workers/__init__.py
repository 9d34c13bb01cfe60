"""Node handlers and the Celery tasks that run them."""
