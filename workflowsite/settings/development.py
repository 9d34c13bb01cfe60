"""Development: a known secret, local hosts, SQLite unless DATABASE_URL says otherwise."""

import os

from workflowsite.settings.base import *  # noqa: F403
from workflowsite.settings.base import env_list

DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"
SECRET_KEY = os.environ.get("SECRET_KEY", DEV_SECRET_KEY)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
