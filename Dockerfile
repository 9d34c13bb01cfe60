# The workflow engine's one image: the API (default CMD), the scheduler, the Celery workers and beat all run it,
# each started by bin/start, the one command line per process (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# graphviz provides `dot`, which the admin uses to render DAG pictures.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends graphviz \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid so orchestrators that check runAsNonRoot can verify it; a home directory because
# fontconfig (used by dot) wants a writable cache there.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app

WORKDIR /app

# Runtime dependencies only (requirements-dev.txt stays out), in their own layer so code changes reuse it.
COPY requirements.txt .
RUN pip install --requirement requirements.txt

COPY . .

# Settings need a secret to import; this one exists only for this command and never reaches the image's
# environment. DJANGO_ENV stays development, so no production checks run at build time.
RUN DJANGO_ENV=development SECRET_KEY=build-time-only-collectstatic-key \
    python manage.py collectstatic --noinput

# The code and static files stay owned by root: the app user can read them but not change them.
USER app

EXPOSE 8000

# bin/start's defaults are for a developer's machine; in a container the API listens on every interface
# with three single-threaded gunicorn processes.
ENV API_BIND=0.0.0.0:8000 \
    API_WORKERS=3 \
    API_THREADS=1

CMD ["bin/start", "api"]
