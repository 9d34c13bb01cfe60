"""Unit tests for workflows.core.templates: finding, resolving and reporting `{{ node.path }}` templates."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workflows.core.templates import (
    TemplateRef,
    TemplateResolutionError,
    copy_json,
    find_references,
    json_type,
    resolve,
)

OUTPUTS: dict[str, object] = {
    "A": {"topic": "cats", "count": 3, "ratio": 0.5, "ok": True, "none": None},
    "fetch": {"data": {"items": [{"name": "first"}, {"name": "second"}], "0": "zero-key"}},
    "text": "plain words",
    "unicode": {"name": "Zoë ☃"},
}


def nested(depth: int, leaf: object) -> Any:
    """A value `depth` containers deep, alternating dicts and lists, built without recursion."""
    value: Any = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


def innermost(value: Any) -> Any:
    while isinstance(value, dict | list):
        value = value["k"] if isinstance(value, dict) else value[0]
    return value


# --- find_references ------------------------------------------------------------------------


def test_finds_templates_at_any_depth_with_their_paths() -> None:
    config = {
        "prompt": "Write about {{ A.topic }} and {{fetch.data.items.0.name}}",
        "messages": [{"role": "user", "content": "{{ text }}"}],
        "count": 3,
        "flag": None,
    }

    assert find_references(config) == [
        ("prompt", TemplateRef("A", ("topic",), "{{ A.topic }}")),
        ("prompt", TemplateRef("fetch", ("data", "items", "0", "name"), "{{fetch.data.items.0.name}}")),
        ("messages[0].content", TemplateRef("text", (), "{{ text }}")),
    ]


def test_dict_keys_are_not_searched() -> None:
    assert find_references({"{{ A.topic }}": "value"}) == []


def test_a_template_that_is_the_whole_config_has_an_empty_path() -> None:
    assert find_references("{{ A }}") == [("", TemplateRef("A", (), "{{ A }}"))]


def test_keys_that_are_not_plain_words_are_quoted_in_paths() -> None:
    config = {"headers": {"X.Trace Id": "{{ A }}"}, "list": [["{{ A }}"]]}

    assert [path for path, _ in find_references(config)] == ['headers["X.Trace Id"]', "list[0][0]"]


@pytest.mark.parametrize(
    ("text", "node_id", "path"),
    [
        ("{{A}}", "A", ()),
        ("{{   A.b   }}", "A", ("b",)),
        ("{{ my-node_2.content-type.@id }}", "my-node_2", ("content-type", "@id")),
        ("{{ données.clé }}", "données", ("clé",)),
        ("{{\nA.b\n}}", "A", ("b",)),
    ],
)
def test_template_syntax(text: str, node_id: str, path: tuple[str, ...]) -> None:
    assert find_references({"v": f"before {text} after"}) == [("v", TemplateRef(node_id, path, text))]


@pytest.mark.parametrize(
    "text",
    [
        "{ A.b }",
        "{{ }}",
        "{{ A b }}",
        "{{ A..b }}",
        "{{ A.b. }}",
        "{{ .b }}",
        "{{ A.b | upper }}",
        "{{ 'A' }}",
    ],
)
def test_text_that_is_not_a_template_is_left_alone(text: str) -> None:
    assert find_references({"v": text}) == []
    assert resolve({"v": text}, OUTPUTS) == {"v": text}


# --- resolve: a whole-string template keeps the value's type ---------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ A.topic }}", "cats"),
        ("{{ A.count }}", 3),
        ("{{ A.ratio }}", 0.5),
        ("{{ A.ok }}", True),
        ("{{ A.none }}", None),
        ("{{ fetch.data.items }}", [{"name": "first"}, {"name": "second"}]),
        ("{{ fetch.data.items.1.name }}", "second"),
        ("{{ fetch.data.0 }}", "zero-key"),
        ("  {{ A.count }}\n", 3),
        ("{{ A }}", OUTPUTS["A"]),
    ],
)
def test_a_string_that_is_one_template_becomes_the_value(text: str, expected: object) -> None:
    assert resolve({"v": text}, OUTPUTS) == {"v": expected}


def test_whole_output_is_inserted_by_reference_not_rebuilt() -> None:
    assert resolve({"v": "{{ A }}"}, OUTPUTS)["v"] is OUTPUTS["A"]  # type: ignore[index]


# --- resolve: interpolation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("About {{ A.topic }}.", "About cats."),
        ("{{ A.count }} items", "3 items"),
        ("x={{ A.ratio }} ok={{ A.ok }} none={{ A.none }}", "x=0.5 ok=true none=null"),
        ("items: {{ fetch.data.items }}", 'items: [{"name":"first"},{"name":"second"}]'),
        ("who: {{ unicode }}", 'who: {"name":"Zoë ☃"}'),
        ("{{ text }}{{ text }}", "plain wordsplain words"),
        ("{{ A.topic }} {{ A.topic }}", "cats cats"),
    ],
)
def test_templates_inside_text_are_interpolated(text: str, expected: str) -> None:
    assert resolve({"v": text}, OUTPUTS) == {"v": expected}


def test_resolve_walks_lists_and_dicts_and_keeps_other_values() -> None:
    config = {"messages": [{"content": "{{ A.topic }}"}, "{{ A.count }}"], "n": 1.5, "keep": None, "b": False}

    assert resolve(config, OUTPUTS) == {
        "messages": [{"content": "cats"}, 3],
        "n": 1.5,
        "keep": None,
        "b": False,
    }


def test_resolve_returns_a_new_structure_and_leaves_config_alone() -> None:
    config = {"messages": [{"content": "{{ A.topic }}"}], "static": {"x": [1]}}

    resolved = resolve(config, OUTPUTS)

    assert config == {"messages": [{"content": "{{ A.topic }}"}], "static": {"x": [1]}}
    assert resolved["static"] == config["static"]  # type: ignore[index]
    assert resolved["static"] is not config["static"]  # type: ignore[index]


def test_template_text_inside_an_output_is_not_resolved_again() -> None:
    outputs = {"A": {"text": "{{ B.secret }}", "obj": {"t": "{{ B.secret }}"}}, "B": {"secret": "leaked"}}

    assert resolve(
        {"whole": "{{ A.text }}", "inline": "say {{ A.text }}", "obj": "{{ A.obj }}"}, outputs
    ) == {
        "whole": "{{ B.secret }}",
        "inline": "say {{ B.secret }}",
        "obj": {"t": "{{ B.secret }}"},
    }


def test_path_segments_are_keys_never_attributes() -> None:
    outputs = {"A": {"__class__": "a key"}}

    assert resolve("{{ A.__class__ }}", outputs) == "a key"
    with pytest.raises(TemplateResolutionError, match="key '__init__' not found in A"):
        resolve("{{ A.__init__ }}", outputs)


# --- resolve: errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ ghost.x }}", "{{ ghost.x }}: node 'ghost' has no output"),
        ("{{ fetch.data.x }}", "{{ fetch.data.x }}: key 'x' not found in fetch.data"),
        (
            "{{ fetch.data.items.2 }}",
            "{{ fetch.data.items.2 }}: index 2 out of range in fetch.data.items (length 2)",
        ),
        (
            "{{ fetch.data.items.first }}",
            "{{ fetch.data.items.first }}: 'first' is not an array index, and fetch.data.items is an array",
        ),
        (
            "{{ A.topic.length }}",
            "{{ A.topic.length }}: cannot look up 'length' in A.topic, which is of type string",
        ),
        ("{{ A.none.x }}", "{{ A.none.x }}: cannot look up 'x' in A.none, which is of type null"),
        ("{{ text.0 }}", "{{ text.0 }}: cannot look up '0' in text, which is of type string"),
        ("see {{ A.missing }} here", "{{ A.missing }}: key 'missing' not found in A"),
    ],
)
def test_unresolvable_templates_say_what_is_missing(text: str, message: str) -> None:
    with pytest.raises(TemplateResolutionError) as caught:
        resolve({"deep": [{"v": text}]}, OUTPUTS)

    assert str(caught.value) == message
    assert caught.value.ref.text in text
    assert message.endswith(caught.value.reason)


def test_unicode_digits_are_not_array_indices() -> None:
    with pytest.raises(TemplateResolutionError, match="not an array index"):
        resolve("{{ fetch.data.items.\u0661 }}", OUTPUTS)  # ARABIC-INDIC DIGIT ONE


def test_resolution_error_is_a_value_error() -> None:
    assert issubclass(TemplateResolutionError, ValueError)


# --- depth ----------------------------------------------------------------------------------


def test_deeply_nested_config_is_searched_and_resolved() -> None:
    config = nested(5_000, "{{ A.count }} and {{ A.topic }}")

    [(path, ref)] = find_references(config)[:1]
    resolved = resolve(config, OUTPUTS)

    assert ref.node_id == "A"
    assert path == "k[0]." * 2_499 + "k[0]"
    assert innermost(resolved) == "3 and cats"
    assert innermost(config) == "{{ A.count }} and {{ A.topic }}"


def test_deeply_nested_output_is_inserted_and_interpolated() -> None:
    output = nested(5_000, "end")

    assert innermost(resolve({"v": "{{ A }}"}, {"A": output})["v"]) == "end"  # type: ignore[index]
    text = resolve("x{{ A }}", {"A": output})
    assert isinstance(text, str)
    assert text == "x" + '{"k":[' * 2_500 + '"end"' + "]}" * 2_500


def test_copy_json_copies_deep_structures_without_recursion() -> None:
    value = nested(5_000, [1, 2])

    copied = copy_json(value)

    innermost_list = copied
    for _ in range(5_000):
        innermost_list = innermost_list["k"] if isinstance(innermost_list, dict) else innermost_list[0]
    assert innermost_list == [1, 2]
    assert copied is not value


# --- helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "boolean"),
        (1, "number"),
        (1.5, "number"),
        ("s", "string"),
        ([], "array"),
        ({}, "object"),
    ],
)
def test_json_type(value: object, name: str) -> None:
    assert json_type(value) == name


# --- properties -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300)
@given(json_values)
def test_interpolation_matches_compact_json_dumps(value: object) -> None:
    expected = (
        value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    )

    assert resolve("<{{ A }}>", {"A": value}) == f"<{expected}>"


@settings(max_examples=200)
@given(json_values)
def test_a_whole_string_template_returns_the_value_itself(value: object) -> None:
    assert resolve(["{{ A }}"], {"A": value})[0] is value  # type: ignore[index]


@settings(max_examples=200)
@given(json_values)
def test_copy_json_equals_its_input(value: object) -> None:
    assert copy_json(value) == value


@settings(max_examples=200)
@given(json_values)
def test_values_without_templates_resolve_to_themselves(value: object) -> None:
    if not find_references(value):
        assert resolve(value, {}) == value
