"""Static checks of docker-compose.yml and the Dockerfile against the code they run (no Docker needed)."""

import ast
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from workflows.messages import ALL_TOPICS

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "workflowsite" / "settings.py"
COMMANDS_DIR = ROOT / "workflows" / "management" / "commands"
DJANGO_BUILTIN_COMMANDS = {"migrate", "collectstatic"}
ENV_READERS = {"os.environ.get", "os.getenv", "env_bool", "env_list"}

# What a dependent waits for: the stores until their healthcheck passes, the one-shot jobs until they exit 0.
EXPECTED_CONDITION = {
    "kafka": "service_healthy",
    "redis": "service_healthy",
    "postgres": "service_healthy",
    "kafka-init": "service_completed_successfully",
    "migrate": "service_completed_successfully",
}
OFFICIAL_IMAGES = {
    "kafka": "apache/kafka",
    "kafka-init": "apache/kafka",
    "redis": "redis",
    "postgres": "postgres",
}
HEALTHCHECKED = ("kafka", "redis", "postgres", "api")
PROJECT_SERVICES = {"migrate", "api", "scheduler", "worker"}


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def dockerfile() -> str:
    """The Dockerfile without its comment lines."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def argv(service: dict[str, Any]) -> list[str]:
    """The service's command as words (a string command is split like a shell would)."""
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment as a mapping, whether written as a mapping or as NAME=value items."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {name: "" if value is None else str(value) for name, value in env.items()}


def project_services() -> dict[str, dict[str, Any]]:
    """The services built from this repository's Dockerfile."""
    return {name: service for name, service in services().items() if "build" in service}


def option_value(words: list[str], option: str) -> str | None:
    """The value after `option` (or in `option=value`), or None when the option is absent."""
    for index, word in enumerate(words):
        if word == option and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(f"{option}="):
            return word.split("=", 1)[1]
    return None


@cache
def settings_env_reads() -> dict[str, ast.expr | None]:
    """Every environment variable settings.py reads by a literal name, with its default expression."""
    reads: dict[str, ast.expr | None] = {}
    for node in ast.walk(ast.parse(SETTINGS.read_text())):
        if not (isinstance(node, ast.Call) and ast.unparse(node.func) in ENV_READERS and node.args):
            continue
        name = node.args[0]
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
            reads[name.value] = node.args[1] if len(node.args) > 1 else None
    return reads


def required_in_production(default: ast.expr | None) -> bool:
    """No default at all, or `"" if PRODUCTION else ...`: production must provide the variable."""
    if default is None:
        return True
    return (
        isinstance(default, ast.IfExp)
        and ast.unparse(default.test) == "PRODUCTION"
        and isinstance(default.body, ast.Constant)
        and default.body.value == ""
    )


def test_compose_file_uses_the_compose_spec_without_version() -> None:
    assert "version" not in compose(), "docker-compose.yml has a `version:` key; the Compose spec drops it"


def test_depends_on_names_existing_services_with_the_right_condition() -> None:
    for name, service in services().items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), (
            f"{name}: depends_on must be a mapping with a condition per service"
        )
        for dependency, spec in depends_on.items():
            assert dependency in services(), f"{name} depends on {dependency!r}, which is not a service"
            assert dependency in EXPECTED_CONDITION, (
                f"{name} depends on {dependency!r}, which has no expected condition"
            )
            condition = (spec or {}).get("condition")
            expected = EXPECTED_CONDITION[dependency]
            assert condition == expected, (
                f"{name} waits for {dependency} with {condition!r}, expected {expected!r}"
            )


def test_long_running_project_services_wait_for_topics_schema_and_stores() -> None:
    for name in ("api", "scheduler", "worker"):
        missing = set(EXPECTED_CONDITION) - set(services()[name].get("depends_on", {}))
        assert not missing, f"{name} does not wait for {sorted(missing)}"
    assert set(services()["migrate"].get("depends_on", {})) >= {"postgres"}, (
        "migrate does not wait for postgres"
    )


def test_services_that_others_wait_on_have_healthchecks() -> None:
    waited_on = {name for name, condition in EXPECTED_CONDITION.items() if condition == "service_healthy"}
    for name in sorted(waited_on | set(HEALTHCHECKED)):
        check = services()[name].get("healthcheck") or {}
        assert check.get("test"), f"{name} has no healthcheck test"
        missing = {"interval", "timeout", "retries", "start_period"} - set(check)
        assert not missing, f"{name}'s healthcheck does not set {sorted(missing)}"


def test_api_healthcheck_calls_health_without_curl() -> None:
    test = " ".join(services()["api"]["healthcheck"]["test"])
    assert "/health" in test, "the api healthcheck does not call /health"
    assert "curl" not in test, "the api healthcheck uses curl, which python:3.11-slim does not have"
    assert "8000:8000" in services()["api"].get("ports", []), "the api does not publish port 8000"


def test_one_shot_jobs_do_not_restart() -> None:
    for name in ("kafka-init", "migrate"):
        restart = services()[name].get("restart")
        assert restart == "no", f"{name} is a one-shot job but has restart {restart!r}"


def test_every_long_running_service_is_restarted_when_it_exits() -> None:
    for name, service in services().items():
        if name not in ("kafka-init", "migrate"):
            restart = service.get("restart")
            assert restart in ("always", "unless-stopped", "on-failure"), f"{name} has restart {restart!r}"


def test_redis_appends_only() -> None:
    words = argv(services()["redis"])
    assert option_value(words, "--appendonly") == "yes", f"redis does not run with --appendonly yes: {words}"
    assert services()["redis"].get("volumes"), "redis has no volume, so its append-only file is lost"


def test_images_are_the_official_ones() -> None:
    for name, repository in OFFICIAL_IMAGES.items():
        image = services()[name].get("image", "")
        found, _, tag = image.partition(":")
        assert found == repository, f"{name} uses image {image!r}, expected the official {repository!r}"
        assert tag and tag != "latest", f"{name}'s image {image!r} is not pinned to a version"


def test_worker_runs_three_replicas() -> None:
    replicas = services()["worker"].get("deploy", {}).get("replicas")
    assert replicas == 3, f"worker has {replicas!r} replicas, expected 3"


def test_project_services_share_one_environment() -> None:
    built = sorted(project_services())
    assert set(built) == PROJECT_SERVICES, (
        f"services built here are {built}, expected {sorted(PROJECT_SERVICES)}"
    )
    envs = {name: environment(service) for name, service in project_services().items()}
    first = envs["api"]
    for name, env in envs.items():
        assert env == first, (
            f"{name}'s environment differs from api's: {sorted(set(env.items()) ^ set(first.items()))}"
        )


def test_project_environment_names_are_read_by_settings() -> None:
    read = settings_env_reads()
    for name, service in project_services().items():
        unknown = set(environment(service)) - set(read)
        assert not unknown, f"{name} sets {sorted(unknown)}, which workflowsite/settings.py never reads"


def test_variables_required_in_production_are_provided() -> None:
    required = {name for name, default in settings_env_reads().items() if required_in_production(default)}
    assert "SECRET_KEY" in required, "settings.py no longer reads SECRET_KEY without a production default"
    for name, service in project_services().items():
        missing = required - set(environment(service))
        assert not missing, f"{name} does not set {sorted(missing)}, which production requires"


def test_kafka_init_creates_exactly_the_engine_topics() -> None:
    script = " ".join(argv(services()["kafka-init"]))
    creates = [line for line in script.split("\n") if "--create" in line]
    topics = [option_value(shlex.split(line), "--topic") for line in creates]
    assert sorted(topics) == sorted(ALL_TOPICS), (
        f"kafka-init creates {topics}, the code uses {list(ALL_TOPICS)}"
    )
    for line in creates:
        words = shlex.split(line)
        assert "--if-not-exists" in words, f"kafka-init fails on a second run: no --if-not-exists in {line!r}"
        assert option_value(words, "--partitions") == "3", f"expected 3 partitions in {line!r}"
        assert option_value(words, "--replication-factor") == "1", f"expected replication 1 in {line!r}"
    prefix = environment(services()["api"]).get("KAFKA_TOPIC_PREFIX", "")
    assert not prefix, (
        f"KAFKA_TOPIC_PREFIX={prefix!r} would make the code use topics kafka-init does not create"
    )


def test_manage_py_commands_exist() -> None:
    commands = [argv(service) for service in services().values()]
    commands += [shlex.split(line) for line in dockerfile().splitlines() if "manage.py" in line]
    used = {
        words[index + 1] for words in commands for index, word in enumerate(words[:-1]) if word == "manage.py"
    }
    assert used, "no manage.py command found in docker-compose.yml or the Dockerfile"
    for command in used:
        exists = command in DJANGO_BUILTIN_COMMANDS or (COMMANDS_DIR / f"{command}.py").is_file()
        assert exists, (
            f"manage.py {command} is neither a Django built-in nor in {COMMANDS_DIR.relative_to(ROOT)}"
        )


def test_celery_worker_uses_the_project_app_and_queue() -> None:
    words = argv(services()["worker"])
    assert words[:1] == ["celery"], f"the worker does not run celery: {words}"
    app = option_value(words, "-A") or option_value(words, "--app")
    assert app, "the worker command has no -A app"
    module = ROOT / app.replace(".", "/") / "celery.py"
    assert module.is_file(), f"celery -A {app}: {module.relative_to(ROOT)} does not exist"
    queue = option_value(words, "-Q") or option_value(words, "--queues")
    expected = environment(services()["worker"]).get("CELERY_QUEUE")
    assert queue == expected, (
        f"the worker consumes {queue!r} but the scheduler sends to CELERY_QUEUE={expected!r}"
    )


def test_dockerfile_builds_on_official_python_with_runtime_requirements() -> None:
    text = dockerfile()
    base = re.search(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert base, "the Dockerfile has no FROM"
    assert re.fullmatch(r"(docker\.io/(library/)?)?python:3\.11[\w.-]*", base.group(1)), (
        f"the Dockerfile's base image is {base.group(1)!r}, expected the official python:3.11"
    )
    assert re.search(r"^COPY\s+requirements\.txt\s", text, re.MULTILINE), (
        "the Dockerfile does not copy requirements.txt"
    )
    assert "requirements-dev.txt" not in text, "the Dockerfile installs the development requirements"


def test_dockerfile_runs_gunicorn_as_a_non_root_user() -> None:
    text = dockerfile()
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0", "0:0"}, (
        f"the image runs as {users[-1] if users else 'root'}"
    )
    assert re.search(r"^EXPOSE\s+8000\b", text, re.MULTILINE), "the Dockerfile does not expose 8000"
    cmd = re.search(r'^CMD\s+\["gunicorn",\s*"([\w.]+):application"', text, re.MULTILINE)
    assert cmd, "the Dockerfile's CMD does not start gunicorn with a WSGI application"
    module = ROOT / (cmd.group(1).replace(".", "/") + ".py")
    assert module.is_file(), f"gunicorn serves {cmd.group(1)}, but {module.relative_to(ROOT)} does not exist"
