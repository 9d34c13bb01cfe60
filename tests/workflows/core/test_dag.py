"""Unit tests for workflows.core.dag: parsing, every validation error, large and random graphs."""

from __future__ import annotations

import copy
import itertools
import json
import math
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from workflows.core.dag import DagValidationError, FieldError, NodeSpec, WorkflowSpec, parse_workflow
from workflows.core.retry import RetryPolicy

HANDLERS = {
    "input": "input",
    "output": "output",
    "call_external_service": "call_external_service",
    "external_api": "call_external_service",
    "llm": "llm",
}
KNOWN_HANDLERS = "call_external_service, input, llm, output"


def node(node_id: str, *dependencies: str, handler: str = "llm", **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "handler": handler, "dependencies": list(dependencies), **extra}


def workflow(*nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "test", "dag": {"nodes": list(nodes)}, **extra}


def diamond() -> dict[str, Any]:
    return {
        "name": "Diamond",
        "input": {"topic": "cats"},
        "dag": {
            "nodes": [
                {"id": "A", "handler": "input", "dependencies": [], "config": {"topic": "cats"}},
                {
                    "id": "B",
                    "handler": "call_external_service",
                    "dependencies": ["A"],
                    "config": {"url": "http://api.example.com/b"},
                },
                {
                    "id": "C",
                    "handler": "llm",
                    "dependencies": ["A"],
                    "config": {"prompt": "Write about {{ A.topic }}"},
                },
                {"id": "D", "handler": "output", "dependencies": ["B", "C"]},
            ]
        },
    }


def parse(data: object) -> WorkflowSpec:
    return parse_workflow(data, handlers=HANDLERS)


def rejection(data: object) -> DagValidationError:
    with pytest.raises(DagValidationError) as caught:
        parse(data)
    return caught.value


def only_error(data: object) -> FieldError:
    error = rejection(data)
    assert len(error.errors) == 1, error.errors
    return error.errors[0]


def assert_topological(spec: WorkflowSpec) -> None:
    rank = {node.id: index for index, node in enumerate(spec.nodes)}
    for spec_node in spec.nodes:
        for dependency in spec_node.dependencies:
            assert rank[dependency] < rank[spec_node.id]


# --- accepted workflows ---------------------------------------------------------------------


def test_diamond_parses_into_a_topologically_ordered_spec() -> None:
    spec = parse(diamond())

    assert spec.name == "Diamond"
    assert spec.input == {"topic": "cats"}
    assert [n.id for n in spec.nodes] == ["A", "B", "C", "D"]
    assert spec.node("C") == NodeSpec(
        id="C",
        handler="llm",
        dependencies=("A",),
        config={"prompt": "Write about {{ A.topic }}"},
        references=("A",),
    )
    assert spec.node("D").dependencies == ("B", "C")
    assert dict(spec.children) == {"A": ("B", "C"), "B": ("D",), "C": ("D",), "D": ()}


def test_node_lookup_of_unknown_id_raises_key_error() -> None:
    with pytest.raises(KeyError):
        parse(diamond()).node("Z")


def test_linear_workflow_parses_even_when_submitted_backwards() -> None:
    spec = parse(workflow(node("c", "b"), node("b", "a"), node("a")))

    assert [n.id for n in spec.nodes] == ["a", "b", "c"]
    assert dict(spec.children) == {"a": ("b",), "b": ("c",), "c": ()}


def test_fan_out_and_fan_in_parse() -> None:
    fan = [node(f"worker-{i}", "root") for i in range(5)]
    spec = parse(workflow(node("root"), *fan, node("join", *(n["id"] for n in fan))))

    assert spec.children["root"] == tuple(f"worker-{i}" for i in range(5))
    assert spec.nodes[-1].id == "join"
    assert_topological(spec)


def test_input_order_is_kept_among_nodes_that_are_ready_together() -> None:
    spec = parse(workflow(node("z"), node("a"), node("m", "z")))

    assert [n.id for n in spec.nodes] == ["z", "a", "m"]


def test_handler_alias_becomes_the_canonical_name() -> None:
    spec = parse(workflow(node("fetch", handler="external_api")))

    assert spec.node("fetch").handler == "call_external_service"


def test_dependencies_config_and_input_default_to_empty() -> None:
    spec = parse({"name": "t", "dag": {"nodes": [{"id": "only", "handler": "output"}]}})

    assert spec.input == {}
    assert spec.node("only") == NodeSpec(id="only", handler="output")


def test_json_null_counts_as_an_absent_optional_field() -> None:
    data = workflow(
        {
            "id": "a",
            "handler": "llm",
            "dependencies": None,
            "config": None,
            "retry": None,
            "timeout_seconds": None,
        },
        input=None,
        defaults=None,
    )

    assert parse(data).node("a") == NodeSpec(id="a", handler="llm")


def test_unicode_ids_are_allowed() -> None:
    spec = parse(workflow(node("données"), node("résumé-1", "données")))

    assert [n.id for n in spec.nodes] == ["données", "résumé-1"]


def test_name_is_stripped() -> None:
    assert parse({**diamond(), "name": "  Diamond  "}).name == "Diamond"


def test_unknown_keys_are_ignored_and_dropped_from_to_json() -> None:
    data = diamond()
    data["ui"] = {"zoom": 2}
    data["dag"]["layout"] = "dagre"
    data["dag"]["nodes"][0]["position"] = {"x": 1, "y": 2}

    spec = parse(data)

    assert spec == parse(diamond())
    assert "position" not in spec.to_json()["dag"]["nodes"][0]  # type: ignore[index]


def test_retry_and_timeout_fall_back_to_workflow_defaults() -> None:
    data = workflow(
        node("a"),
        node("b", "a", retry=5, timeout_seconds=10),
        defaults={"retry": {"max_attempts": 3, "jitter": False}, "timeout_seconds": 60},
    )

    spec = parse(data)

    assert spec.node("a").retry == RetryPolicy(max_attempts=3, jitter=False)
    assert spec.node("a").timeout_seconds == 60.0
    assert spec.node("b").retry == RetryPolicy(max_attempts=5)
    assert spec.node("b").timeout_seconds == 10.0


def test_template_may_read_any_ancestor_not_only_a_parent() -> None:
    data = diamond()
    data["dag"]["nodes"][3]["config"] = {"summary": "{{ A.topic }}: {{ B.status }} / {{ C }}"}

    assert parse(data).node("D").references == ("A", "B", "C")


def test_references_are_listed_once_in_order_of_first_use() -> None:
    config = {"a": "{{ C.x }} {{ A.y }}", "b": ["{{ C.z }}"]}
    spec = parse(workflow(node("A"), node("C", "A"), node("D", "C", config=config)))

    assert spec.node("D").references == ("C", "A")


# --- to_json ----------------------------------------------------------------------------------


def test_to_json_is_canonical_plain_json() -> None:
    spec = parse(workflow(node("a", retry=2, timeout_seconds=5, config={"k": [1, {"x": None}]})))

    assert spec.to_json() == {
        "name": "test",
        "input": {},
        "dag": {
            "nodes": [
                {
                    "id": "a",
                    "handler": "llm",
                    "dependencies": [],
                    "config": {"k": [1, {"x": None}]},
                    "retry": RetryPolicy(max_attempts=2).to_json(),
                    "timeout_seconds": 5.0,
                }
            ]
        },
    }


def test_to_json_round_trips() -> None:
    data = diamond()
    data["dag"]["nodes"][1].update(handler="external_api", retry={"max_attempts": 4}, timeout_seconds=2.5)
    data["dag"]["nodes"].reverse()
    spec = parse(data)

    normalized = spec.to_json()
    again = parse(json.loads(json.dumps(normalized)))

    assert again == spec
    assert again.to_json() == normalized


def test_spec_does_not_share_data_with_its_input_or_its_json() -> None:
    data = diamond()
    spec = parse(data)
    data["input"]["topic"] = "dogs"
    data["dag"]["nodes"][2]["config"]["prompt"] = "changed"
    normalized = spec.to_json()
    normalized["dag"]["nodes"][0]["config"]["topic"] = "changed"  # type: ignore[index]

    assert spec.input == {"topic": "cats"}
    assert spec.node("C").config == {"prompt": "Write about {{ A.topic }}"}
    assert spec.node("A").config == {"topic": "cats"}


# --- errors: top level ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ([], "", ["JSON object", "array"]),
        ("workflow", "", ["JSON object", "string"]),
        ({"dag": {"nodes": [node("a")]}}, "name", ["name"]),
        ({"name": 7, "dag": {"nodes": [node("a")]}}, "name", ["name", "string", "number"]),
        ({"name": "   ", "dag": {"nodes": [node("a")]}}, "name", ["name", "empty"]),
        ({"name": "x" * 201, "dag": {"nodes": [node("a")]}}, "name", ["200", "201"]),
        ({"name": "n"}, "dag", ["dag"]),
        ({"name": "n", "dag": []}, "dag", ["dag", "object", "array"]),
        ({"name": "n", "dag": {}}, "dag.nodes", ["workflow has no nodes"]),
        ({"name": "n", "dag": {"nodes": []}}, "dag.nodes", ["workflow has no nodes"]),
        ({"name": "n", "dag": {"nodes": {"a": {}}}}, "dag.nodes", ["array", "object"]),
        (workflow(node("a"), input=[1]), "input", ["input", "object", "array"]),
        (workflow(node("a"), defaults="fast"), "defaults", ["defaults", "object", "string"]),
        (workflow(node("a"), defaults={"retry": "x"}), "defaults.retry", ["retry", "string"]),
        (workflow(node("a"), defaults={"timeout_seconds": 0}), "defaults.timeout_seconds", ["timeout"]),
    ],
)
def test_workflow_level_errors_name_the_field(data: object, field: str, words: list[str]) -> None:
    error = rejection(data)

    assert error.errors[0].field == field
    for word in words:
        assert word in error.errors[0].message
        assert word in error.detail
    if field:
        assert field in error.detail


# --- errors: nodes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "field", "node_id", "words"),
    [
        ([node("a"), "b"], "dag.nodes[1]", None, ["node must be an object", "string"]),
        ([node("a"), {"handler": "llm"}], "dag.nodes[1].id", None, ["no id"]),
        ([{"id": 12, "handler": "llm"}], "dag.nodes[0].id", None, ["id", "string", "number"]),
        ([node("a b")], "dag.nodes[0].id", None, ["'a b'", "letters, digits, '_' or '-'"]),
        ([node("a.b")], "dag.nodes[0].id", None, ["'a.b'", "not allowed"]),
        ([node("")], "dag.nodes[0].id", None, ["''", "1-128"]),
        ([node("x" * 129)], "dag.nodes[0].id", None, ["x" * 40 + "…", "1-128"]),
        ([node("a"), node("b"), node("a")], "dag.nodes[2].id", "a", ["'a'", "dag.nodes[0]", "dag.nodes[2]"]),
        ([{"id": "a"}], "dag.nodes[0].handler", "a", ["node 'a'", "handler", KNOWN_HANDLERS]),
        ([node("a", handler=3)], "dag.nodes[0].handler", "a", ["node 'a'", "string", "number"]),
        ([node("a", handler="gpt")], "dag.nodes[0].handler", "a", ["node 'a'", "'gpt'", KNOWN_HANDLERS]),
        (
            [node("a"), {"id": "b", "handler": "llm", "dependencies": "a"}],
            "dag.nodes[1].dependencies",
            "b",
            ["node 'b'", "array", "string"],
        ),
        (
            [node("a"), {"id": "b", "handler": "llm", "dependencies": ["a", 5]}],
            "dag.nodes[1].dependencies[1]",
            "b",
            ["node 'b'", "dependencies[1]", "number"],
        ),
        (
            [node("a"), node("b", "a", "zz")],
            "dag.nodes[1].dependencies[1]",
            "b",
            ["node 'b'", "unknown", "'zz'"],
        ),
        ([node("a"), node("b", "b")], "dag.nodes[1].dependencies[0]", "b", ["node 'b'", "itself"]),
        (
            [node("a"), node("b", "a", "a")],
            "dag.nodes[1].dependencies[1]",
            "b",
            ["node 'b'", "'a'", "more than once"],
        ),
        ([node("a", config=["x"])], "dag.nodes[0].config", "a", ["node 'a'", "config", "object", "array"]),
        ([node("a", config="x")], "dag.nodes[0].config", "a", ["node 'a'", "config", "string"]),
        ([node("a", retry=True)], "dag.nodes[0].retry", "a", ["node 'a'", "retry", "boolean"]),
        ([node("a", retry=0)], "dag.nodes[0].retry", "a", ["node 'a'", "1 to 20", "0"]),
        (
            [node("a", retry={"max_attempts": 21})],
            "dag.nodes[0].retry.max_attempts",
            "a",
            ["node 'a'", "retry.max_attempts", "21"],
        ),
        (
            [node("a", retry={"backoff_seconds": -1})],
            "dag.nodes[0].retry.backoff_seconds",
            "a",
            ["node 'a'", "retry.backoff_seconds", "-1"],
        ),
        (
            [node("a", retry={"max_attempt": 3})],
            "dag.nodes[0].retry.max_attempt",
            "a",
            ["node 'a'", "unknown setting 'max_attempt'"],
        ),
        (
            [node("a", timeout_seconds="30")],
            "dag.nodes[0].timeout_seconds",
            "a",
            ["node 'a'", "number", "string"],
        ),
        ([node("a", timeout_seconds=True)], "dag.nodes[0].timeout_seconds", "a", ["node 'a'", "boolean"]),
        ([node("a", timeout_seconds=0)], "dag.nodes[0].timeout_seconds", "a", ["node 'a'", "more than 0"]),
        ([node("a", timeout_seconds=-5)], "dag.nodes[0].timeout_seconds", "a", ["node 'a'", "-5"]),
        ([node("a", timeout_seconds=86_401)], "dag.nodes[0].timeout_seconds", "a", ["node 'a'", "86400"]),
        ([node("a", timeout_seconds=math.nan)], "dag.nodes[0].timeout_seconds", "a", ["node 'a'", "nan"]),
    ],
)
def test_node_errors_name_the_node_and_the_field(
    nodes: list[object], field: str, node_id: str | None, words: list[str]
) -> None:
    error = rejection(workflow(*nodes))  # type: ignore[arg-type]

    first = error.errors[0]
    assert (first.field, first.node) == (field, node_id)
    assert field in error.detail
    for word in words:
        assert word in first.message
        assert word in error.detail


def test_longest_allowed_id_is_accepted() -> None:
    assert parse(workflow(node("x" * 128))).nodes[0].id == "x" * 128


def test_timeout_at_the_upper_bound_is_accepted() -> None:
    assert parse(workflow(node("a", timeout_seconds=86_400))).node("a").timeout_seconds == 86_400.0


def test_malformed_id_does_not_also_break_the_edges_to_it() -> None:
    error = rejection(workflow(node("a b"), node("c", "a b")))

    assert [e.field for e in error.errors] == ["dag.nodes[0].id"]


# --- errors: cycles -------------------------------------------------------------------------


def test_cycle_is_reported_with_its_path() -> None:
    error = only_error(workflow(node("A", "C"), node("B", "A"), node("C", "B"), node("D", "C")))

    assert error == FieldError("dag.nodes[0].dependencies[0]", "cycle detected: A -> B -> C -> A", "A")


def test_cycle_detail_names_the_cycle_and_the_field() -> None:
    error = rejection(workflow(node("start"), node("x", "start", "y"), node("y", "x")))

    assert error.detail == "cycle detected: x -> y -> x (at dag.nodes[1].dependencies[1])"


def test_cycle_is_found_among_nodes_downstream_of_it() -> None:
    nodes = [node("a"), node("b", "a", "d"), node("c", "b"), node("d", "c"), node("e", "d"), node("f", "e")]

    error = only_error(workflow(*nodes))

    assert error.message == "cycle detected: b -> c -> d -> b"


def test_a_very_long_cycle_is_elided_in_the_message() -> None:
    size = 5_000
    nodes = [node(f"n{i}", f"n{(i - 1) % size}") for i in range(size)]

    error = only_error(workflow(*nodes))

    assert error.message.startswith("cycle detected: n0 -> n1 -> ")
    assert "… 4980 more …" in error.message
    assert error.message.endswith(" -> n4999 -> n0")
    assert len(error.message) < 400


# --- errors: templates ----------------------------------------------------------------------


def test_template_reading_a_non_ancestor_names_template_node_and_field() -> None:
    data = diamond()
    data["dag"]["nodes"][2]["config"]["prompt"] = "Write about {{ B.body }}"

    error = only_error(data)

    assert error.field == "dag.nodes[2].config.prompt"
    assert error.node == "C"
    assert "{{ B.body }}" in error.message
    assert "node 'C'" in error.message
    assert "'B'" in error.message
    assert "not upstream" in error.message


def test_template_reading_a_descendant_is_rejected() -> None:
    data = diamond()
    data["dag"]["nodes"][0]["config"] = {"topic": "{{ D }}"}

    error = only_error(data)

    assert (error.field, error.node) == ("dag.nodes[0].config.topic", "A")


def test_template_reading_an_unknown_node_is_rejected() -> None:
    data = diamond()
    data["dag"]["nodes"][2]["config"] = {"messages": [{"role": "user", "content": "{{ ghost.text }}"}]}

    error = only_error(data)

    assert error.field == "dag.nodes[2].config.messages[0].content"
    assert "{{ ghost.text }}" in error.message
    assert "unknown node 'ghost'" in error.message


def test_template_reading_its_own_node_is_rejected() -> None:
    error = only_error(workflow(node("a", config={"x": {"y": "{{a.x}}"}})))

    assert error.field == "dag.nodes[0].config.x.y"
    assert "{{a.x}}" in error.message
    assert "own output" in error.message


def test_template_under_an_unusual_key_gets_a_quoted_path() -> None:
    error = only_error(workflow(node("a"), node("b", config={"headers": {"X.Trace Id": "{{ zz }}"}})))

    assert error.field == 'dag.nodes[1].config.headers["X.Trace Id"]'


# --- errors: many at once -------------------------------------------------------------------


def test_all_problems_are_reported_not_only_the_first() -> None:
    data = {
        "name": "",
        "dag": {
            "nodes": [
                node("a", handler="nope"),
                node("b", "a", "missing", timeout_seconds=-1),
                node("a"),
                node("c", "b", config={"p": "{{ zz }}"}),
            ]
        },
    }

    error = rejection(data)

    assert [e.field for e in error.errors] == [
        "name",
        "dag.nodes[0].handler",
        "dag.nodes[1].dependencies[1]",
        "dag.nodes[1].timeout_seconds",
        "dag.nodes[2].id",
        "dag.nodes[3].config.p",
    ]
    assert error.detail.endswith("; and 5 more problems")
    assert error.detail.startswith("name must not be empty (at name)")


def test_field_error_as_dict() -> None:
    assert FieldError("dag.nodes[0].id", "bad", "a").as_dict() == {
        "field": "dag.nodes[0].id",
        "message": "bad",
        "node": "a",
    }


def test_validation_error_needs_at_least_one_error() -> None:
    with pytest.raises(ValueError):
        DagValidationError([])


# --- size and depth -------------------------------------------------------------------------


def test_a_100k_node_chain_validates_without_recursion() -> None:
    size = 100_000
    nodes = [node(f"n{i}", *([f"n{i - 1}"] if i else [])) for i in range(size)]
    nodes.reverse()

    spec = parse(workflow(*nodes))

    assert len(spec.nodes) == size
    assert spec.nodes[0].id == "n0"
    assert spec.nodes[-1].id == "n99999"
    assert spec.children["n41"] == ("n42",)


def test_a_long_chain_where_every_node_reads_the_first() -> None:
    size = 20_000
    nodes = [node("n0", handler="input")]
    nodes += [node(f"n{i}", f"n{i - 1}", config={"p": "{{ n0.topic }}"}) for i in range(1, size)]

    spec = parse(workflow(*nodes))

    assert spec.nodes[-1].references == ("n0",)


def test_a_long_chain_with_one_template_reading_a_side_branch_is_rejected() -> None:
    size = 20_000
    nodes = [node("side")] + [node(f"n{i}", *([f"n{i - 1}"] if i else [])) for i in range(size)]
    nodes[-1]["config"] = {"p": "{{ side }}"}

    error = only_error(workflow(*nodes))

    assert error.field == f"dag.nodes[{size}].config.p"


def deep_config(depth: int, leaf: object) -> dict[str, Any]:
    config: dict[str, Any] = {"leaf": leaf}
    for level in range(depth):
        config = {"k": config} if level % 2 else {"items": [config]}
    return config


def test_deeply_nested_config_validates() -> None:
    spec = parse(workflow(node("A"), node("B", "A", config=deep_config(5_000, "{{ A.x }}"))))

    assert spec.node("B").references == ("A",)


def test_deeply_nested_config_error_is_reported() -> None:
    error = only_error(workflow(node("A"), node("B", config=deep_config(5_000, "{{ A.x }}"))))

    assert error.field.startswith("dag.nodes[1].config.k.items[0].k.items[0].k")
    assert error.field.endswith(".items[0].leaf")
    assert error.field.count(".k") == 2_500


def test_deeply_nested_config_round_trips() -> None:
    spec = parse(workflow(node("A", config=deep_config(5_000, 1))))

    assert parse(spec.to_json()).node("A").references == ()


# --- properties -----------------------------------------------------------------------------

node_ids = st.from_regex(r"[\w-]{1,12}", fullmatch=True)


@st.composite
def dags(draw: st.DrawFn) -> tuple[dict[str, list[str]], list[str]]:
    """Edges only from earlier to later ids (so no cycle), then a shuffled submission order."""
    ids = draw(st.lists(node_ids, min_size=1, max_size=20, unique=True))
    dependencies = {
        node_id: draw(st.lists(st.sampled_from(ids[:index]), unique=True)) if index else []
        for index, node_id in enumerate(ids)
    }
    return dependencies, draw(st.permutations(ids))


def submitted(dependencies: dict[str, list[str]], order: list[str]) -> dict[str, Any]:
    return workflow(*(node(node_id, *dependencies[node_id]) for node_id in order))


def ancestor_pairs(dependencies: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Every (ancestor, descendant) pair, by brute force."""
    pairs = []
    for descendant in dependencies:
        seen: set[str] = set()
        stack = list(dependencies[descendant])
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(dependencies[current])
        pairs.extend((ancestor, descendant) for ancestor in sorted(seen))
    return pairs


@settings(max_examples=200, deadline=None)
@given(dags())
def test_random_dags_are_accepted_in_a_topological_order(dag: tuple[dict[str, list[str]], list[str]]) -> None:
    dependencies, order = dag

    spec = parse(submitted(dependencies, order))

    assert sorted(n.id for n in spec.nodes) == sorted(dependencies)
    assert_topological(spec)
    for spec_node in spec.nodes:
        assert set(spec_node.dependencies) == set(dependencies[spec_node.id])
        for dependency in spec_node.dependencies:
            assert spec_node.id in spec.children[dependency]
    assert parse(spec.to_json()) == spec


@settings(max_examples=200, deadline=None)
@given(dags(), st.data())
def test_a_back_edge_is_rejected_as_a_cycle_along_real_edges(
    dag: tuple[dict[str, list[str]], list[str]], data: st.DataObject
) -> None:
    dependencies, order = dag
    pairs = ancestor_pairs(dependencies)
    assume(pairs)
    ancestor, descendant = data.draw(st.sampled_from(pairs))
    with_cycle = copy.deepcopy(dependencies)
    with_cycle[ancestor].append(descendant)

    error = rejection(submitted(with_cycle, order))

    assert "cycle" in error.detail
    [cycle_error] = [e for e in error.errors if e.message.startswith("cycle detected: ")]
    path = cycle_error.message.removeprefix("cycle detected: ").split(" -> ")
    assert len(path) >= 3
    assert path[0] == path[-1] == cycle_error.node
    assert len(set(path)) == len(path) - 1
    for before, after in itertools.pairwise(path):
        assert before in with_cycle[after]
    position = order.index(path[0])
    closing = with_cycle[path[0]].index(path[-2])
    assert cycle_error.field == f"dag.nodes[{position}].dependencies[{closing}]"
