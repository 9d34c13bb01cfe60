"""Unit tests for workflows.dag_picture: node labels, status colours, escaping, the size limit."""

import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from workflows.dag_picture import (
    MAX_PICTURE_EDGES,
    MAX_PICTURE_NODES,
    STATUS_COLOURS,
    UNKNOWN_STATUS_COLOUR,
    DagPictureUnavailable,
    dag_svg,
)
from workflows.models import ExecutionStatus, NodeStatus

SVG = "{http://www.w3.org/2000/svg}"


def spec(*nodes: tuple[str, str, list[str]]) -> dict[str, Any]:
    return {
        "name": "Picture",
        "input": {},
        "dag": {
            "nodes": [{"id": i, "handler": h, "dependencies": deps, "config": {}} for i, h, deps in nodes]
        },
    }


DIAMOND = spec(("A", "input", []), ("B", "llm", ["A"]), ("C", "llm", ["A"]), ("D", "output", ["B", "C"]))


def drawn_nodes(svg: str) -> dict[str, tuple[list[str], str]]:
    """Each drawn node's label lines and fill colour, keyed by its first label line (the node id)."""
    root = ET.fromstring(svg)
    nodes = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("class") != "node":
            continue
        lines = [text.text or "" for text in group.iter(f"{SVG}text")]
        fill = next(
            shape.get("fill") for shape in group.iter() if shape.tag in {f"{SVG}path", f"{SVG}polygon"}
        )
        nodes[lines[0]] = (lines, fill)
    return nodes


def test_every_node_is_labelled_with_id_and_handler_and_filled_with_its_status_colour() -> None:
    statuses = {"A": "COMPLETED", "B": "FAILED", "C": "RUNNING", "D": "SKIPPED"}
    nodes = drawn_nodes(dag_svg(DIAMOND, statuses))
    assert nodes == {
        "A": (["A", "input"], STATUS_COLOURS["COMPLETED"]),
        "B": (["B", "llm"], STATUS_COLOURS["FAILED"]),
        "C": (["C", "llm"], STATUS_COLOURS["RUNNING"]),
        "D": (["D", "output"], STATUS_COLOURS["SKIPPED"]),
    }


def test_edges_follow_dependencies() -> None:
    svg = dag_svg(DIAMOND, {})
    edges = re.findall(r'<g id="edge\d+" class="edge">\s*<title>(.*?)</title>', svg)
    # Nodes are named by position in the spec: A=n0, B=n1, C=n2, D=n3.
    assert sorted(edges) == ["n0&#45;&gt;n1", "n0&#45;&gt;n2", "n1&#45;&gt;n3", "n2&#45;&gt;n3"]


def test_nodes_without_a_state_are_drawn_uncoloured() -> None:
    nodes = drawn_nodes(dag_svg(DIAMOND, {"A": "PENDING"}))
    assert nodes["A"][1] == STATUS_COLOURS["PENDING"]
    assert {fill for _, fill in list(nodes.values())[1:]} == {UNKNOWN_STATUS_COLOUR}


def test_output_is_a_bare_svg_element_for_inline_html() -> None:
    svg = dag_svg(DIAMOND, {})
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg


def test_every_status_has_a_distinct_colour() -> None:
    assert set(STATUS_COLOURS) == set(NodeStatus.values) | set(ExecutionStatus.values)
    assert len(set(STATUS_COLOURS.values())) == len(STATUS_COLOURS)
    assert UNKNOWN_STATUS_COLOUR not in STATUS_COLOURS.values()


@pytest.mark.parametrize(
    "hostile_id",
    [
        '<script>alert("x")</script>',
        "a&amp;b",
        '"quoted"',
        "back\\slash\\N",
        "-->",
        "<<b>html</b>>",
        "ünïcode",
    ],
)
def test_user_data_is_escaped_and_shown_literally(hostile_id: str) -> None:
    hostile = spec((hostile_id, "<i>handler</i>", []), ("after", "output", [hostile_id]))
    svg = dag_svg(hostile, {hostile_id: "FAILED"})
    assert "<script" not in svg and "<i>" not in svg and "<b>" not in svg
    nodes = drawn_nodes(svg)  # parses, so the markup is well formed
    assert nodes[hostile_id] == ([hostile_id, "<i>handler</i>"], STATUS_COLOURS["FAILED"])


def test_too_many_nodes_gives_a_message_instead_of_a_picture() -> None:
    wide = spec(*[(f"n{i}", "input", []) for i in range(MAX_PICTURE_NODES + 1)])
    with pytest.raises(DagPictureUnavailable, match=f"{MAX_PICTURE_NODES + 1} nodes"):
        dag_svg(wide, {})


def test_too_many_edges_gives_a_message_instead_of_a_picture() -> None:
    sources = [(f"s{i}", "input", []) for i in range(40)]
    sinks = [(f"t{i}", "output", [f"s{j}" for j in range(40)]) for i in range(MAX_PICTURE_EDGES // 40 + 1)]
    with pytest.raises(DagPictureUnavailable, match="edges"):
        dag_svg(spec(*sources, *sinks), {})


def test_largest_allowed_dag_is_drawn() -> None:
    chain = spec(*[(f"n{i}", "llm", [f"n{i - 1}"] if i else []) for i in range(MAX_PICTURE_NODES)])
    assert len(drawn_nodes(dag_svg(chain, {}))) == MAX_PICTURE_NODES


def test_missing_dot_binary_gives_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DagPictureUnavailable, match="not installed"):
        dag_svg(DIAMOND, {})
