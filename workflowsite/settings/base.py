"""Settings every environment shares, from the environment; development.py, test.py and
production.py build on these (workflowsite/settings/__init__.py picks one by DJANGO_ENV)."""

import os
import ssl
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean environment variable ("1", "true", "yes", "on" are true)."""
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    """Read a comma-separated environment variable."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


SECRET_KEY = os.environ.get("SECRET_KEY", "")
DEBUG = env_bool("DEBUG", False)  # off by default: debug mode records every query in memory
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "")

# The shared service token (`Authorization: Token <token>` or `Bearer <token>`) acts as the service
# user (workflows/api/auth.py); users have their own tokens. Without credentials, writes are open
# only when anonymous writes are allowed: by default in development without a service token.
WORKFLOWS_API_TOKEN = os.environ.get("WORKFLOWS_API_TOKEN", "").strip()
WORKFLOWS_ALLOW_ANONYMOUS_WRITES = env_bool("WORKFLOWS_ALLOW_ANONYMOUS_WRITES", False)
# Larger request bodies get 413 (workflows/api/middleware.py); a 100,000-node chain is about 9 MB.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("WORKFLOW_MAX_BODY_BYTES", str(32 * 1024 * 1024)))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_celery_beat",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "workflows",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "workflows.api.middleware.RequestGuardMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "workflowsite.urls"
LOGIN_REDIRECT_URL = "/workflows"  # after the browsable API's log in, when it names no page to return to
WSGI_APPLICATION = "workflowsite.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite unless DATABASE_URL says otherwise (production requires it). SQLite is set up for several
# processes writing: WAL, a busy timeout, and IMMEDIATE transactions so writers queue instead of
# failing to upgrade.
DATABASE_URL = os.environ.get("DATABASE_URL", "").strip() or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=600, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: a password goes in the URL (redis://:password@host or redis://user:password@host for an ACL
# user); rediss:// is TLS, the server verified against REDIS_SSL_CA_FILE (else the system's CAs).
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_SSL_CA_FILE = os.environ.get("REDIS_SSL_CA_FILE", "")
# What every client of a rediss:// URL gets (workflows/clients.py, Django's cache, Celery).
REDIS_SSL_OPTIONS = {
    "ssl_cert_reqs": ssl.CERT_REQUIRED,
    **({"ssl_ca_certs": REDIS_SSL_CA_FILE} if REDIS_SSL_CA_FILE else {}),
}


def redis_ssl(url: str) -> dict[str, object] | None:
    """The TLS options for a Redis URL: REDIS_SSL_OPTIONS for rediss://, None for plain redis://."""
    return REDIS_SSL_OPTIONS if url.startswith("rediss://") else None


CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": 1,
            "SOCKET_TIMEOUT": 1,
            "CONNECTION_POOL_KWARGS": redis_ssl(REDIS_URL) or {},
        },
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = True  # serve app static files without a collectstatic step in development

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "workflows.api.errors.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "workflows.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "workflows.api.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["workflows.api.auth.ExecutionPermissions"],
    "DEFAULT_THROTTLE_CLASSES": ["workflows.api.auth.WriteRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Workflow Orchestration Engine API",
    "DESCRIPTION": "Submit DAG workflows, trigger them, follow their progress and fetch results.",
    "VERSION": "0.1.0",
    # Swagger UI and ReDoc from the installed sidecar package, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Routes accept an optional trailing slash; the schema shows the paths clients use.
    "PREPROCESSING_HOOKS": ["workflows.api.views.drop_optional_trailing_slash"],
}

# Celery: the broker is Redis; tasks are acknowledged after they ran so a killed worker's task
# is delivered again, and workers take one task at a time so short tasks spread over workers.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "workflows")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", "") or None
CELERY_BROKER_USE_SSL = redis_ssl(CELERY_BROKER_URL)
CELERY_REDIS_BACKEND_USE_SSL = redis_ssl(CELERY_RESULT_BACKEND or "")
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task received by a worker and not acknowledged goes back to the queue after 20 s, looked for
# every 2 s: the backstop for a worker killed before its heartbeat showed the task
# (docs/reliability.md, "Loss is declared on evidence"). A redelivered copy of an attempt that runs
# or was superseded is refused by the worker's claim (workflows/mirror.py), so a node running
# longer costs one refused redelivery.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 20,
    "unacked_restore_interval": 2,
    "unacked_restore_throttle": 1,
}
# kombu's Redis transport guarded so that a worker survives a Redis restart (workflowsite/broker.py).
CELERY_BROKER_TRANSPORT = "workflowsite.broker:Transport"
# Celery beat reads its schedule from the database, so operators see and change it in the admin;
# the retention purge's entry is created by a migration (workflows/migrations).
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# Our own knobs, read through workflows.conf.conf(); documented in the README.
WORKFLOWS = {
    "KAFKA_BOOTSTRAP_SERVERS": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
    "KAFKA_SECURITY_PROTOCOL": os.environ.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
    "KAFKA_SASL_MECHANISM": os.environ.get("KAFKA_SASL_MECHANISM", ""),
    "KAFKA_SASL_USERNAME": os.environ.get("KAFKA_SASL_USERNAME", ""),
    "KAFKA_SASL_PASSWORD": os.environ.get("KAFKA_SASL_PASSWORD", ""),
    "KAFKA_SSL_CA_FILE": os.environ.get("KAFKA_SSL_CA_FILE", ""),
    "KAFKA_TOPIC_PREFIX": os.environ.get("KAFKA_TOPIC_PREFIX", ""),
    "KAFKA_PARTITIONS": int(os.environ.get("KAFKA_PARTITIONS", "3")),
    "SCHEDULER_GROUP_ID": os.environ.get("SCHEDULER_GROUP_ID", "workflow-scheduler"),
    "MOCK_LATENCY_SECONDS": os.environ.get("WORKFLOW_MOCK_LATENCY", "1-2"),
    "NODE_TIMEOUT_SECONDS": os.environ.get("WORKFLOW_NODE_TIMEOUT_SECONDS", "300"),
    "MIN_TASKS_PER_BATCH": os.environ.get("WORKFLOW_MIN_TASKS_PER_BATCH", "8"),
    "MAX_NODES_PER_TASK": os.environ.get("WORKFLOW_MAX_NODES_PER_TASK", "32"),
    "MAX_INPUT_BYTES": os.environ.get("WORKFLOW_MAX_INPUT_BYTES", str(512 * 1024)),
    "MAX_CONFIG_BYTES": os.environ.get("WORKFLOW_MAX_CONFIG_BYTES", str(256 * 1024)),
    "MAX_RESOLVED_CONFIG_BYTES": os.environ.get("WORKFLOW_MAX_RESOLVED_CONFIG_BYTES", str(512 * 1024)),
    "MAX_OUTPUT_BYTES": os.environ.get("WORKFLOW_MAX_OUTPUT_BYTES", str(512 * 1024)),
    "MAX_NODE_PAYLOAD_BYTES": os.environ.get("WORKFLOW_MAX_NODE_PAYLOAD_BYTES", str(8 * 1024 * 1024)),
    "SCHEDULER_STALL_SECONDS": os.environ.get("WORKFLOW_SCHEDULER_STALL_SECONDS", "30"),
    "SCHEDULER_GIVE_UP_SECONDS": os.environ.get("WORKFLOW_SCHEDULER_GIVE_UP_SECONDS", "120"),
    "INVOCATION_LEDGER_PATH": os.environ.get("WORKFLOW_INVOCATION_LEDGER", ""),
    "MAX_ABANDONED_HANDLERS": os.environ.get("WORKFLOW_MAX_ABANDONED_HANDLERS", "16"),
    "WORKER_HEARTBEAT_SECONDS": os.environ.get("WORKFLOW_WORKER_HEARTBEAT_SECONDS", "1"),
    "WORKER_DEAD_AFTER_SECONDS": os.environ.get("WORKFLOW_WORKER_DEAD_AFTER_SECONDS", "10"),
    # Finished executions older than this are purged (workflows/retention.py).
    "RETENTION_DAYS": os.environ.get("WORKFLOW_RETENTION_DAYS", "30"),
    # A finished execution leaves the Redis mirror this long after it finished.
    "MIRROR_TTL_SECONDS": os.environ.get("WORKFLOW_MIRROR_TTL_SECONDS", str(24 * 3600)),
    "SIGNING_KEY": os.environ.get("WORKFLOW_SIGNING_KEY", ""),
    "EVENTS_PAGE_SIZE": os.environ.get("WORKFLOW_EVENTS_PAGE_SIZE", "100"),
    "API_READS_REQUIRE_AUTH": env_bool("WORKFLOWS_API_READS_REQUIRE_AUTH", False),
    "METRICS_REQUIRE_AUTH": env_bool("WORKFLOWS_METRICS_REQUIRE_AUTH", False),
    "API_WRITE_RATE": os.environ.get("WORKFLOWS_API_WRITE_RATE", "600/min"),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
