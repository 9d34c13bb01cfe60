"""WSGI entry point (gunicorn workflowsite.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workflowsite.settings")
application = get_wsgi_application()
