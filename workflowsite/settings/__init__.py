"""The settings of the environment DJANGO_ENV names: development (the default), test or production.

DJANGO_SETTINGS_MODULE=workflowsite.settings (the default of manage.py, wsgi, asgi and celery) loads
workflowsite.settings.<DJANGO_ENV>; naming a module directly (workflowsite.settings.test) skips this.
"""

import os
from importlib import import_module

from django.core.exceptions import ImproperlyConfigured

ENVIRONMENTS = ("development", "test", "production")

if os.environ.get("DJANGO_SETTINGS_MODULE", __name__) == __name__:
    DJANGO_ENV = os.environ.get("DJANGO_ENV", "development")
    if DJANGO_ENV not in ENVIRONMENTS:
        raise ImproperlyConfigured(f"DJANGO_ENV={DJANGO_ENV!r} is not one of {', '.join(ENVIRONMENTS)}")
    chosen = import_module(f"{__name__}.{DJANGO_ENV}")
    globals().update({name: value for name, value in vars(chosen).items() if name.isupper()})
