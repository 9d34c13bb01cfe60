"""Hostile and malformed requests: every one gets a fast 4xx JSON error that says what is wrong and
where, never a 500 and never HTML. Also: template values are data, never evaluated.

No services: a successful submit stays inside the test transaction, so its on_commit hooks
(the Redis mirror) never run.
"""

import json
from typing import Any

import pytest
from django.core.exceptions import RequestDataTooBig
from django.test import Client, RequestFactory
from rest_framework.exceptions import ParseError

from workflows import selectors
from workflows.api import errors, parsers
from workflows.api.parsers import MAX_JSON_DEPTH
from workflows.core.templates import TemplateResolutionError, find_references, resolve
from workflows.models import NodeRun

pytestmark = pytest.mark.django_db

UUID_ROUTES = [
    ("get", "/workflows/{}"),
    ("get", "/workflows/{}/"),
    ("get", "/workflows/{}/results"),
    ("get", "/workflows/{}/events"),
    ("post", "/workflows/{}/trigger"),
    ("post", "/workflow/trigger/{}"),
    ("post", "/workflows/{}/cancel"),
    ("post", "/workflows/{}/retry"),
]
STRANGE_EXECUTION_IDS = [
    "not-a-uuid",
    "123",
    "ünïcødé-☃",
    "..",
    "%2e%2e%5c..%5cetc%5cpasswd",
    "abc%00def",
    "%00",
    "a" * 2000,
    "12345678-1234-1234-1234-12345678901",  # one digit short
    "' OR 1=1 --",
]


def workflow(*nodes: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": "hostile", "dag": {"nodes": list(nodes)}, **fields}


def node(node_id: object = "A", handler: object = "input", **fields: Any) -> dict[str, Any]:
    return {"id": node_id, "handler": handler, **fields}


def nested(depth: int, leaf: object = 1) -> object:
    """`depth` objects inside each other, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def post(client: Client, body: str | bytes, content_type: str = "application/json", **extra: Any) -> Any:
    return client.generic("POST", "/workflows", body, content_type=content_type, **extra)


def post_json(client: Client, data: object) -> Any:
    return post(client, json.dumps(data))


def error_of(response: Any, status: int) -> dict[str, Any]:
    """The JSON error body, after checking the status and that it is JSON in the API's shape."""
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = json.loads(response.content)
    assert set(body) == {"detail", "code", "errors"}, body
    assert isinstance(body["detail"], str) and body["detail"], body
    assert isinstance(body["errors"], list), body
    return body


# --- bodies that are not JSON, or not a JSON object ---------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"name": ', b"{'name': 'single quotes'}", b'{"name": "x",}', b"\xff\xfe\x00", b" "],
)
def test_body_that_is_not_json_is_400(client: Client, body: bytes) -> None:
    error = error_of(post(client, body), 400)

    assert error["code"] == "parse_error"
    assert error["detail"].startswith("request body is not valid JSON: ")


@pytest.mark.parametrize(
    ("body", "kind"),
    [("[]", "array"), ('[{"name": "x"}]', "array"), ('"x"', "string"), ("42", "number"), ("null", "null")],
)
def test_json_that_is_not_an_object_is_400(client: Client, body: str, kind: str) -> None:
    error = error_of(post(client, body), 400)

    assert error["detail"] == f"a workflow must be a JSON object, got {kind}"


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_non_finite_numbers_are_400(client: Client, number: str) -> None:
    body = json.dumps(workflow(node(timeout_seconds=0))).replace(
        '"timeout_seconds": 0', f'"timeout_seconds": {number}'
    )

    error = error_of(post(client, body), 400)

    assert "not valid JSON" in error["detail"]
    assert number.lstrip("-") in error["detail"]


def test_empty_json_body_names_the_missing_fields(client: Client) -> None:
    error = error_of(post(client, b""), 400)

    assert {item["field"] for item in error["errors"]} == {"name", "dag"}


# --- wrong types at every level of the workflow ---------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"name": 5, "dag": {"nodes": [node()]}}, "name", "name must be a string, got number"),
        ({"name": ["x"], "dag": {"nodes": [node()]}}, "name", "name must be a string, got array"),
        ({"name": " ", "dag": {"nodes": [node()]}}, "name", "name must not be empty"),
        ({"name": "x" * 10_000, "dag": {"nodes": [node()]}}, "name", "at most 200 characters"),
        ({"name": "x", "dag": []}, "dag", "dag must be an object, got array"),
        ({"name": "x", "dag": "A -> B"}, "dag", "dag must be an object, got string"),
        ({"name": "x", "dag": {"nodes": {"A": {}}}}, "dag.nodes", "dag.nodes must be an array, got object"),
        ({"name": "x", "dag": {"nodes": []}}, "dag.nodes", "workflow has no nodes"),
        (workflow(5), "dag.nodes[0]", "a node must be an object, got number"),
        (workflow(None), "dag.nodes[0]", "a node must be an object, got null"),
        (workflow({"handler": "input"}), "dag.nodes[0].id", "a node has no id"),
        (workflow(node(7)), "dag.nodes[0].id", "node id must be a string, got number"),
        (workflow(node(handler=["llm"])), "dag.nodes[0].handler", "handler must be a string, got array"),
        (workflow(node(handler="eval")), "dag.nodes[0].handler", "unknown handler 'eval'"),
        (workflow(node(dependencies="B")), "dag.nodes[0].dependencies", "must be an array of node ids"),
        (workflow(node(dependencies={"B": 1})), "dag.nodes[0].dependencies", "got object"),
        (workflow(node(dependencies=[5])), "dag.nodes[0].dependencies[0]", "must be a node id string"),
        (workflow(node(dependencies=[None])), "dag.nodes[0].dependencies[0]", "got null"),
        (workflow(node(dependencies=[["B"]])), "dag.nodes[0].dependencies[0]", "got array"),
        (workflow(node(dependencies=["nowhere"])), "dag.nodes[0].dependencies[0]", "unknown node 'nowhere'"),
        (workflow(node(config=[1, 2])), "dag.nodes[0].config", "config must be an object, got array"),
        (workflow(node(config="x")), "dag.nodes[0].config", "config must be an object, got string"),
        (workflow(node(retry="3")), "dag.nodes[0].retry", "retry must be a number of attempts or an object"),
        (workflow(node(retry={"max_attempt": 3})), "dag.nodes[0].retry.max_attempt", "unknown setting"),
        (workflow(node(retry=True)), "dag.nodes[0].retry", "got boolean"),
        (
            workflow(node(timeout_seconds="10")),
            "dag.nodes[0].timeout_seconds",
            "must be a number, got string",
        ),
        (workflow(node(timeout_seconds=True)), "dag.nodes[0].timeout_seconds", "got boolean"),
        (workflow(node(timeout_seconds=-1)), "dag.nodes[0].timeout_seconds", "more than 0"),
        (workflow(node(), input=[1]), "input", "input must be an object, got array"),
        (workflow(node(), input="x"), "input", "input must be an object, got string"),
    ],
)
def test_wrong_types_name_the_field_and_node(client: Client, data: object, field: str, words: str) -> None:
    error = error_of(post_json(client, data), 400)

    assert error["code"] == "invalid_workflow"
    assert field in {item["field"] for item in error["errors"]}, error
    assert words in error["detail"], error
    if field.startswith("dag.nodes[0].") and field != "dag.nodes[0].id" and isinstance(data, dict):
        assert "node 'A'" in error["detail"], error


# --- strange node ids -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "node_id",
    ["", " ", "a" * 129, "a" * 100_000, "../../etc/passwd", "a.b", "a b", "{{ A }}", "<script>", "A\u202eB"],
)
def test_strange_node_ids_are_refused_by_field(client: Client, node_id: str) -> None:
    error = error_of(post_json(client, workflow(node(node_id))), 400)

    assert error["errors"][0]["field"] == "dag.nodes[0].id"
    assert "is not allowed" in error["detail"]
    assert len(error["detail"]) < 300, "a huge id must be cut short in the message"


@pytest.mark.parametrize("node_id", ["a\x00b", "\x00"])
def test_nul_in_a_node_id_is_refused_by_field(client: Client, node_id: str) -> None:
    error = error_of(post_json(client, workflow(node(node_id))), 400)

    assert error["code"] == "invalid_text"
    assert error["detail"] == "dag.nodes[0].id: a string may not contain a NUL character (\\u0000)"


def test_unicode_node_ids_are_accepted(client: Client) -> None:
    nodes = [node("ünï-cødé"), node("日本", "output", dependencies=["ünï-cødé"])]

    response = post_json(client, workflow(*nodes))

    assert response.status_code == 201, response.content
    assert set(NodeRun.objects.values_list("node_id", flat=True)) == {"ünï-cødé", "日本"}


# --- strings the database cannot store ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ('{"name": "a\\u0000b"}', "name", "NUL character"),
        ('{"name": "x", "input": {"k\\u0000": 1}}', 'input["k\\u0000"]', "NUL character"),
        ('{"name": "x", "dag": {"nodes": [{"id": "A", "config": {"p": ["ok", "\\u0000"]}}]}}', None, "NUL"),
        ('{"name": "\\ud800"}', "name", "unpaired surrogate"),
        ('{"name": "x", "input": {"\\udfff": 1}}', 'input["\\udfff"]', "unpaired surrogate"),
    ],
)
def test_nul_and_lone_surrogates_are_refused_with_their_path(
    client: Client, body: str, field: str | None, words: str
) -> None:
    error = error_of(post(client, body), 400)

    assert error["code"] == "invalid_text"
    assert words in error["detail"]
    assert error["errors"][0]["field"] == (field or "dag.nodes[0].config.p[1]")


def test_escaped_backslash_before_u0000_is_ordinary_text(client: Client) -> None:
    body = json.dumps(workflow(node(config={"p": "\\u0000 and \U0001f600"})))

    assert post(client, body).status_code == 201


# --- depth and size -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 100_000 + "1" + "}" * 100_000,
        '{"name": "x", "dag": {"nodes": [{"id": "A", "handler": "input", "config": '
        + '{"a":' * 100_000
        + "1"
        + "}" * 100_000
        + "}]}}",
    ],
    ids=["lists", "objects", "config"],
)
def test_json_deeper_than_the_recursion_limit_is_400(client: Client, body: str) -> None:
    error = error_of(post(client, body), 400)

    assert error["code"] == "too_deep"
    assert f"JSON may nest at most {MAX_JSON_DEPTH} levels" in error["detail"]


def test_depth_limit_is_exact_and_names_the_field(client: Client) -> None:
    # the body, dag, nodes and the node are 4 levels; config and what it holds are the rest
    inside = MAX_JSON_DEPTH - 4
    at_limit = workflow(node(config=nested(inside)))
    over_limit = workflow(node(config=nested(inside + 1)))

    assert post_json(client, at_limit).status_code == 201
    error = error_of(post_json(client, over_limit), 400)
    assert error["code"] == "too_deep"
    assert error["detail"].startswith("dag.nodes[0].config.a.a.a")
    assert error["errors"][0]["field"] == "dag.nodes[0].config" + ".a" * inside


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("[" * 100_000, "dag", "JSON may nest at most"),
        (
            '{"nodes": [' + '{"a":' * 200 + "1" + "}" * 200 + "]}",
            "dag.nodes[0]" + ".a" * (MAX_JSON_DEPTH - 2),
            "nest at most",
        ),
        ('{"nodes": [{"config": {"x": "\\u0000"}}]}', "dag.nodes[0].config.x", "NUL character"),
        ('{"x": 1e999}', "dag", "dag is not valid JSON: number 1e999 is out of range"),
    ],
)
def test_form_fields_decode_json_with_the_body_rules(text: str, field: str, words: str) -> None:
    with pytest.raises(ParseError) as raised:
        parsers.loads(text, field="dag")

    assert words in str(raised.value.detail)
    assert getattr(raised.value, "errors", [{"field": "dag"}])[0]["field"] == field


def test_form_submission_with_deep_json_is_400(admin_user: Any) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)  # forms are for sessions (workflows/api/auth.py)
    response = client.post("/workflows", {"name": "x", "dag": "[" * 100_000})

    error_of(response, 400)


def test_body_over_the_limit_is_413_before_it_is_read(client: Client, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    error = error_of(post(client, json.dumps(workflow(node(config={"p": "x" * 2000})))), 413)

    assert error["detail"] == "request body is larger than the 1000-byte limit"
    assert error["code"] == "too_large"
    # write routes that never read a body are guarded the same way
    error_of(client.post("/workflows/x/trigger", "x" * 2000, content_type="application/json"), 413)


def test_default_limit_is_32_mib_and_holds_a_100000_node_chain(client: Client, settings: Any) -> None:
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == 32 * 1024 * 1024
    nodes = [node("n0", "input")] + [
        node(f"n{i}", "llm", dependencies=[f"n{i - 1}"]) for i in range(1, 100_000)
    ]
    body = json.dumps(workflow(*nodes))
    assert len(body) < settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    response = post(client, body)

    assert response.status_code == 201, response.content[:500]
    assert NodeRun.objects.count() == 100_000


def test_request_data_too_big_is_413_wherever_django_raises_it() -> None:
    request = RequestFactory().post("/workflows")

    response = errors.bad_request(request, RequestDataTooBig("too big"))

    error = error_of(response, 413)
    assert "larger than the" in error["detail"]


def test_chunked_body_is_411(client: Client) -> None:
    error = error_of(post(client, b"{}", HTTP_TRANSFER_ENCODING="chunked"), 411)

    assert "Content-Length" in error["detail"]


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", "9" * 30])
def test_unreadable_content_length_is_400(client: Client, length: str) -> None:
    error = error_of(post(client, b"{}", CONTENT_LENGTH=length), 400)

    assert "Content-Length" in error["detail"]


# --- strange execution ids in URLs ----------------------------------------------------------------


@pytest.mark.parametrize("execution_id", STRANGE_EXECUTION_IDS)
@pytest.mark.parametrize(("method", "route"), UUID_ROUTES)
def test_non_uuid_execution_ids_are_404_on_every_route(
    client: Client, method: str, route: str, execution_id: str
) -> None:
    response = getattr(client, method)(route.format(execution_id), content_type="application/json")

    error = error_of(response, 404)
    assert error["detail"].startswith(("no execution with id", "there is nothing at")), error


@pytest.mark.parametrize("path", ["/workflows//trigger", "/workflows/../etc/passwd", "/workflows/a/b/c"])
def test_malformed_execution_paths_are_404(client: Client, path: str) -> None:
    error_of(client.get(path), 404)


# --- methods, media types, unknown URLs, server errors --------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("put", "/workflows", "GET, POST"),
        ("patch", "/workflows", "GET, POST"),
        ("delete", "/workflows", "GET, POST"),
        ("get", "/workflows/x/trigger", "POST"),
        ("delete", "/workflows/x", "GET"),
        ("post", "/health", "GET"),
    ],
)
def test_unsupported_methods_are_405(client: Client, method: str, path: str, allowed: str) -> None:
    error = error_of(getattr(client, method)(path), 405)

    assert error["code"] == "method_not_allowed"
    assert error["detail"].startswith(f"method {method.upper()} is not allowed on {path}; allowed: {allowed}")


def test_unknown_method_is_405(client: Client) -> None:
    error = error_of(client.generic("BREW", "/workflows"), 405)

    assert "method BREW is not allowed" in error["detail"]


@pytest.mark.parametrize(
    ("content_type", "words"),
    [
        ("text/plain", "media type 'text/plain'"),
        ("application/xml", "media type 'application/xml'"),
        ("", "no Content-Type header"),
    ],
)
def test_unsupported_media_types_are_415(client: Client, content_type: str, words: str) -> None:
    error = error_of(post(client, b'{"name": "x"}', content_type=content_type), 415)

    assert error["code"] == "unsupported_media_type"
    assert words in error["detail"]
    assert "application/json" in error["detail"]


def test_non_text_charset_is_refused_not_decompressed(client: Client) -> None:
    import zlib

    error = error_of(post(client, zlib.compress(b"[" * 10_000), "application/json; charset=zlib_codec"), 400)

    assert "zlib_codec" in error["detail"]


@pytest.mark.parametrize(
    "path", ["/nope", "/workflowsX", "/admin-x", "/workflows/x/y/z", "/%00", "/" + "é" * 300]
)
def test_unknown_urls_are_json_404(client: Client, path: str) -> None:
    error = error_of(client.get(path), 404)

    assert error["code"] == "not_found"
    assert error["detail"].startswith("there is nothing at /")
    assert len(error["detail"]) < 300


def test_admin_still_serves_html(client: Client) -> None:
    assert client.get("/admin/").status_code == 302
    login = client.get("/admin/login/")
    assert login.status_code == 200
    assert login["Content-Type"].startswith("text/html")


def test_server_error_is_json_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(**_: Any) -> None:
        raise RuntimeError("secret internals: password=hunter2")

    monkeypatch.setattr(selectors, "execution_list", explode)

    response = Client(raise_request_exception=False).get("/workflows")

    error = error_of(response, 500)
    assert error["code"] == "server_error"
    assert "hunter2" not in response.content.decode()
    assert "Traceback" not in response.content.decode()


def test_disallowed_host_is_json_400(client: Client) -> None:
    error = error_of(client.get("/workflows", HTTP_HOST="evil.example"), 400)

    assert "Host header" in error["detail"]
    assert "evil.example" not in error["detail"]


@pytest.mark.parametrize("query", ["status=%00", "name=a%00b", "%00=1"])
def test_nul_in_a_query_parameter_is_400(client: Client, query: str) -> None:
    error = error_of(client.get(f"/workflows?{query}"), 400)

    assert "NUL character" in error["detail"]


@pytest.mark.parametrize("query", ["status=bogus", "status=☃", "name=%ff%fe", "page=0", "page=-1", "page=x"])
def test_odd_list_filters_are_not_server_errors(client: Client, query: str) -> None:
    response = client.get(f"/workflows?{query}")

    assert response.status_code in {200, 404}
    assert response["Content-Type"].startswith("application/json")


# --- template values are data, never code ---------------------------------------------------------

CODE_LIKE = [
    "{{ 7*7 }}",
    "{{ config.__class__.__init__.__globals__['os'].system('id') }}",
    "{% for x in range(10**9) %}{{ x }}{% endfor %}",
    "{{ A.topic }}",
    "${7*7} #{7*7} <%= 7*7 %>",
    "__import__('os').system('rm -rf /')",
    "{{ B.secret }}",
]


@pytest.mark.parametrize("text", CODE_LIKE)
def test_outputs_that_look_like_templates_or_code_pass_through_verbatim(text: str) -> None:
    outputs = {"A": {"text": text, "topic": "cats"}, "B": {"secret": "must not leak"}}

    assert resolve({"whole": "{{ A.text }}"}, outputs) == {"whole": text}
    assert resolve({"inline": "got: {{ A.text }}!"}, outputs) == {"inline": f"got: {text}!"}
    assert resolve({"nested": ["{{ A }}"]}, outputs) == {"nested": [{"text": text, "topic": "cats"}]}


def test_config_text_that_is_not_a_template_is_left_alone() -> None:
    config = {
        "p": "{{ 7*7 }}",
        "q": "{% if True %}x{% endif %}",
        "r": "${7*7}",
        "s": "{{}}",
        "t": "{{ a b }}",
    }

    assert find_references(config) == []
    assert resolve(config, {}) == config


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{ A.__class__ }}", "key '__class__' not found in A"),
        ("{{ A.__class__.__name__ }}", "key '__class__' not found in A"),
        ("{{ A.topic.upper }}", "cannot look up 'upper' in A.topic, which is of type string"),
        ("{{ A.items }}", "key 'items' not found in A"),
        ("{{ __builtins__ }}", "node '__builtins__' has no output"),
    ],
)
def test_template_paths_are_key_lookups_not_attribute_access(template: str, reason: str) -> None:
    with pytest.raises(TemplateResolutionError) as raised:
        resolve({"p": template}, {"A": {"topic": "cats"}})

    assert raised.value.reason == reason
