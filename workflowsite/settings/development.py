"""Development: a known secret, local hosts, SQLite unless DATABASE_URL says otherwise."""

import importlib.util
import os

from workflowsite.settings.base import *  # noqa: F403
from workflowsite.settings.base import INSTALLED_APPS, WORKFLOWS, WORKFLOWS_API_TOKEN, env_bool, env_list

DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"
# Signs the messages schedulers and workers send one another (workflows/signatures.py).
DEV_SIGNING_KEY = "dev-only-insecure-signing-key-change-me"
WORKFLOWS = {**WORKFLOWS, "SIGNING_KEY": WORKFLOWS["SIGNING_KEY"] or DEV_SIGNING_KEY}
SECRET_KEY = os.environ.get("SECRET_KEY", DEV_SECRET_KEY)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")

# Test stacks, soaks, benchmarks and the invocation ledger are development tools (docs/design.md):
# installed here and in tests (which start from these settings), never in production, and absent
# from the image (.dockerignore), hence the check that the package is there.
if importlib.util.find_spec("devtools") is not None:
    INSTALLED_APPS = [*INSTALLED_APPS, "devtools"]

# The README's curl walk-through writes without credentials, until a service token is set.
WORKFLOWS_ALLOW_ANONYMOUS_WRITES = env_bool("WORKFLOWS_ALLOW_ANONYMOUS_WRITES", not WORKFLOWS_API_TOKEN)
