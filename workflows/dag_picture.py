"""A picture of a workflow's DAG as SVG, each node coloured by its state (Graphviz's `dot`)."""

import subprocess
from collections.abc import Mapping
from typing import Any

import graphviz

from workflows.models import NodeStatus

# Above these sizes `dot` takes more than about a second (edges cost most) and the picture is no
# longer readable, so the page shows a message instead.
MAX_PICTURE_NODES = 500
MAX_PICTURE_EDGES = 1000
RENDER_ENGINE = "dot"

# The one place a status gets its colour: the DAG picture's node fill and the admin's status badges.
# Execution statuses are a subset of node statuses, so both kinds share it.
STATUS_COLOURS: dict[str, str] = {
    NodeStatus.PENDING: "#e5e7eb",  # grey: not started
    NodeStatus.QUEUED: "#bfdbfe",  # light blue: dispatched, waiting for a worker
    NodeStatus.RUNNING: "#fde68a",  # amber: a worker has it
    NodeStatus.COMPLETED: "#bbf7d0",  # green
    NodeStatus.FAILED: "#fecaca",  # red
    NodeStatus.SKIPPED: "#f5f5f4",  # pale: will not run because an ancestor failed
    NodeStatus.CANCELLED: "#d6d3d1",  # stone: stopped by an operator
}
UNKNOWN_STATUS_COLOUR = "#ffffff"  # a node with no state given, e.g. a definition's picture
INK_COLOUR = "#1f2937"  # text and borders, dark enough on every fill above


class DagPictureUnavailable(Exception):
    """No picture can be drawn; the message says why, for the person looking at the page."""


def status_colour(status: str | None) -> str:
    return STATUS_COLOURS.get(status or "", UNKNOWN_STATUS_COLOUR)


def _dot_text(*lines: str) -> str:
    """A label from user data, shown literally: DOT gives backslashes, `<...>` and `&entities;`
    a meaning in labels, so each is escaped."""
    return graphviz.nohtml("\\n".join(graphviz.escape(line.replace("&", "&amp;")) for line in lines))


def dag_graph(spec: Mapping[str, Any], statuses: Mapping[str, str]) -> graphviz.Digraph:
    """The DOT graph of a normalized spec (`WorkflowSpec.to_json()`); nodes named by position.

    Node ids are user data, so they only ever appear escaped inside labels, never as DOT names.
    """
    nodes = spec["dag"]["nodes"]
    name_of = {node["id"]: f"n{position}" for position, node in enumerate(nodes)}
    graph = graphviz.Digraph(
        engine=RENDER_ENGINE,
        graph_attr={"rankdir": "TB", "bgcolor": "transparent", "nodesep": "0.3", "ranksep": "0.4"},
        node_attr={
            "shape": "box",
            "style": "rounded,filled",
            "fontname": "Helvetica,Arial,sans-serif",
            "fontsize": "11",
            "color": INK_COLOUR,
            "fontcolor": INK_COLOUR,
        },
        edge_attr={"color": INK_COLOUR, "arrowsize": "0.6"},
    )
    for node in nodes:
        status = statuses.get(node["id"])
        graph.node(
            name_of[node["id"]],
            label=_dot_text(node["id"], node["handler"]),
            tooltip=status or "no state",
            fillcolor=status_colour(status),
        )
    for node in nodes:
        for dependency in node["dependencies"]:
            graph.edge(name_of[dependency], name_of[node["id"]])
    return graph


def dag_svg(spec: Mapping[str, Any], statuses: Mapping[str, str]) -> str:
    """The picture as an inline `<svg>` element, or DagPictureUnavailable saying why not."""
    nodes = spec["dag"]["nodes"]
    edge_count = sum(len(node["dependencies"]) for node in nodes)
    if len(nodes) > MAX_PICTURE_NODES or edge_count > MAX_PICTURE_EDGES:
        raise DagPictureUnavailable(
            f"This workflow has {len(nodes)} nodes and {edge_count} edges; pictures are drawn up to "
            f"{MAX_PICTURE_NODES} nodes and {MAX_PICTURE_EDGES} edges. The node table shows every state."
        )
    try:
        svg = dag_graph(spec, statuses).pipe(format="svg", encoding="utf-8")
    except graphviz.ExecutableNotFound as exc:
        raise DagPictureUnavailable(
            "Graphviz's `dot` program is not installed here (bin/setup installs it)."
        ) from exc
    except subprocess.CalledProcessError as exc:
        raise DagPictureUnavailable(
            f"Graphviz could not draw this workflow (exit {exc.returncode})."
        ) from exc
    # Drop the XML declaration and doctype, which do not belong inside an HTML page.
    return svg[svg.index("<svg") :]
