"""Static checks of docker-compose.yml and the Dockerfile against the code they run (no Docker needed)."""

import ast
import os
import re
import shlex
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "workflowsite" / "settings"
COMMANDS_DIR = ROOT / "workflows" / "management" / "commands"
DJANGO_BUILTIN_COMMANDS = {"migrate", "collectstatic"}
ENV_READERS = {"os.environ.get", "os.getenv", "env_bool", "env_list", "require"}

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
    "redis": "redis",
    "postgres": "postgres",
}
HEALTHCHECKED = ("kafka", "redis", "postgres", "api")
PROJECT_SERVICES = {"kafka-init", "migrate", "api", "scheduler", "worker", "beat"}
PROCESSES = ("api", "scheduler", "worker", "beat")
START = ROOT / "bin" / "start"
KAFKA_PROPERTIES = ROOT / "services" / "kafka" / "server.properties"
# Properties compose sets differently from the local broker, and why: its listeners have the
# container's names plus one for the host, and topics come from kafka-init only (a misnamed one fails).
KAFKA_COMPOSE_OWN = {
    "controller.quorum.voters",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "log.dirs",
    "auto.create.topics.enable",
}


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
    """Every environment variable the settings modules read by a literal name, with its default
    expression (production.py's, read last, wins: its `require(name, what)` has none)."""
    reads: dict[str, ast.expr | None] = {}
    modules = sorted(SETTINGS.glob("*.py"), key=lambda path: path.stem == "production")
    for module in modules:
        for node in ast.walk(ast.parse(module.read_text())):
            if not (isinstance(node, ast.Call) and ast.unparse(node.func) in ENV_READERS and node.args):
                continue
            name = node.args[0]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                is_require = ast.unparse(node.func) == "require"
                reads[name.value] = None if is_require else (node.args[1] if len(node.args) > 1 else None)
    return reads


def required_in_production(default: ast.expr | None) -> bool:
    """No default at all: production.py requires the variable, or nothing else gives it a value."""
    return default is None


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


def test_one_celery_beat_runs_the_project_app() -> None:
    beat = services()["beat"]
    words = started("beat")
    assert words[:5] == ["-m", "celery", "-A", "workflowsite", "beat"], f"bin/start beat runs {words}"
    assert beat.get("deploy", {}).get("replicas", 1) == 1, "two beats send every task twice"


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
        assert not unknown, f"{name} sets {sorted(unknown)}, which workflowsite/settings/ never reads"


def test_variables_required_in_production_are_provided() -> None:
    required = {name for name, default in settings_env_reads().items() if required_in_production(default)}
    assert {"SECRET_KEY", "DATABASE_URL", "WORKFLOW_SIGNING_KEY"} <= required, (
        "production.py no longer requires SECRET_KEY, DATABASE_URL and WORKFLOW_SIGNING_KEY"
    )
    for name, service in project_services().items():
        missing = required - set(environment(service))
        assert not missing, f"{name} does not set {sorted(missing)}, which production requires"


def test_kafka_init_creates_the_topics_with_the_code_s_own_command() -> None:
    words = argv(services()["kafka-init"])
    assert words[-2:] == ["manage.py", "create_topics"], (
        f"kafka-init runs {words}, not manage.py create_topics (the code's topic list)"
    )
    prefix = environment(services()["api"]).get("KAFKA_TOPIC_PREFIX", "")
    assert not prefix, (
        f"KAFKA_TOPIC_PREFIX={prefix!r} would make the code use topics kafka-init does not create"
    )


def kafka_template() -> dict[str, str]:
    """services/kafka/server.properties as name -> value (placeholders left as they are)."""
    lines = KAFKA_PROPERTIES.read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {name.strip(): value.strip() for name, value in pairs}


def test_compose_kafka_runs_the_properties_of_the_local_broker() -> None:
    env = environment(services()["kafka"])
    template = kafka_template()
    assert "process.roles" in template, "services/kafka/server.properties holds no broker properties"
    for name, value in template.items():
        variable = "KAFKA_" + name.upper().replace(".", "_")
        if name in KAFKA_COMPOSE_OWN:
            assert variable in env, f"compose's kafka does not set {variable} (its own {name})"
        elif "${" in value:
            assert variable not in env or env[variable].isdigit(), f"{variable}={env[variable]!r}"
        else:
            assert env.get(variable) == value, (
                f"compose's kafka sets {variable}={env.get(variable)!r}, services/kafka/server.properties"
                f" says {name}={value}"
            )
    assert env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") == "false", "compose's kafka creates misnamed topics"


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


def started(process: str, *extra: str, **env: str) -> list[str]:
    """The command line bin/start runs for `process` (printed by an echo in place of python)."""
    environ = {"PATH": os.environ["PATH"], "PYTHON": "echo", **env}
    done = subprocess.run([START, process, *extra], env=environ, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return shlex.split(done.stdout)


def test_compose_procfile_and_image_start_each_process_with_bin_start() -> None:
    for name in PROCESSES:
        assert argv(services()[name])[:2] == ["bin/start", name], (
            f"compose's {name} runs {argv(services()[name])}, not bin/start {name}"
        )
    procfile = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line)
    assert sorted(procfile) == sorted(PROCESSES), f"the Procfile runs {sorted(procfile)}"
    for name, command in procfile.items():
        assert shlex.split(command)[:2] == ["bin/start", name], f"the Procfile's {name} runs {command!r}"
    assert re.search(r'^CMD\s+\["bin/start",\s*"api"\]', dockerfile(), re.MULTILINE), (
        "the image's CMD is not bin/start api"
    )


def test_bin_start_runs_each_process_with_its_environment_and_extra_arguments() -> None:
    api = started("api", "--access-logfile", "-", API_BIND="0.0.0.0:9000", API_WORKERS="3")
    assert api[:3] == ["-m", "gunicorn", "workflowsite.wsgi:application"], api
    assert (option_value(api, "--bind"), option_value(api, "--workers")) == ("0.0.0.0:9000", "3"), api
    assert api[-2:] == ["--access-logfile", "-"], api
    assert started("scheduler") == ["manage.py", "run_scheduler"]
    worker = started("worker", "--without-gossip", CELERY_QUEUE="q1", PROCESS_NAME="worker.2")
    assert worker[:5] == ["-m", "celery", "-A", "workflowsite", "worker"], worker
    assert (option_value(worker, "-Q"), option_value(worker, "--hostname")) == ("q1", "worker.2@%h")
    assert worker[-1] == "--without-gossip", worker
    assert started("beat")[:5] == ["-m", "celery", "-A", "workflowsite", "beat"]
    unknown = subprocess.run([START, "flower"], capture_output=True, text=True, timeout=30)
    assert unknown.returncode == 2 and "api|scheduler|worker|beat" in unknown.stderr, unknown


def test_celery_worker_uses_the_project_app_and_queue() -> None:
    words = started("worker", CELERY_QUEUE=environment(services()["worker"])["CELERY_QUEUE"])
    app = option_value(words, "-A")
    assert app, "bin/start's worker has no -A app"
    module = ROOT / app.replace(".", "/") / "celery.py"
    assert module.is_file(), f"celery -A {app}: {module.relative_to(ROOT)} does not exist"
    assert started("worker")[words.index("-Q") + 1] == "workflows", "the default queue is not workflows"


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
    assert re.search(r"\bAPI_BIND=0\.0\.0\.0:8000\b", text), "the image's API does not listen on 0.0.0.0:8000"
    words = started("api")
    served = words[words.index("gunicorn") + 1].removesuffix(":application")
    module = ROOT / (served.replace(".", "/") + ".py")
    assert module.is_file(), f"gunicorn serves {served}, but {module.relative_to(ROOT)} does not exist"


SECRETS = ("SECRET_KEY", "WORKFLOWS_API_TOKEN", "WORKFLOW_SIGNING_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD")


def test_secrets_are_required_not_defaulted() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for name in SECRETS:
        uses = re.findall(rf"\$\{{{name}(:?[-?=+]?)", text)
        assert uses, f"docker-compose.yml never uses {name}"
        assert set(uses) == {":?"}, f"{name} must be required with ${{{name}:?message}}, found {uses}"
    assert "change-me" not in text, "docker-compose.yml still carries a placeholder secret"


def test_project_services_run_in_production() -> None:
    for name, service in project_services().items():
        assert environment(service).get("DJANGO_ENV") == "production", f"{name} does not run in production"


def test_only_the_api_publishes_a_port_beyond_loopback() -> None:
    for name, service in services().items():
        for port in service.get("ports", []):
            if name != "api":
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_redis_needs_the_password_the_services_use() -> None:
    words = argv(services()["redis"])
    password = option_value(words, "--requirepass")
    assert password and password.startswith("${REDIS_PASSWORD:?"), f"redis runs without a password: {words}"
    assert environment(services()["redis"]).get("REDISCLI_AUTH") == password, (
        "the redis healthcheck's redis-cli does not log in with the server's password"
    )
    url = environment(services()["api"])["REDIS_URL"]
    assert url.startswith(f"redis://:{password}@"), f"the services reach Redis without its password: {url}"
