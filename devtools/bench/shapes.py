"""Workflow definitions for the benchmark, and the sizes a full or a quick run uses.

Every node uses the `input` handler with an empty config: it returns at once without sleeping, so
what is measured is the engine's own overhead per node.
"""

from dataclasses import dataclass
from typing import Any

NOOP_HANDLER = "input"


@dataclass(frozen=True)
class Sizes:
    """How big each shape is, and how long each may take before it is reported as timed out."""

    chain_length: int
    throughput_executions: int
    throughput_layers: int
    throughput_width: int
    fan_out_width: int
    definition_sizes: tuple[int, ...]
    definition_width: int
    cost_sizes: tuple[int, int]
    cost_width: int
    deadline_s: float
    warm_up_executions: int = 0

    @property
    def throughput_nodes(self) -> int:
        return self.throughput_layers * self.throughput_width


FULL = Sizes(
    chain_length=100,
    throughput_executions=200,
    throughput_layers=5,
    throughput_width=10,
    fan_out_width=2_000,
    definition_sizes=(10_000, 100_000),
    definition_width=100,
    cost_sizes=(1_000, 10_000),
    cost_width=100,
    deadline_s=900.0,
    warm_up_executions=40,
)
QUICK = Sizes(
    chain_length=10,
    throughput_executions=5,
    throughput_layers=2,
    throughput_width=5,
    fan_out_width=50,
    definition_sizes=(1_000,),
    definition_width=100,
    cost_sizes=(100, 300),
    cost_width=10,
    deadline_s=60.0,
)


def node(node_id: str, dependencies: list[str]) -> dict[str, Any]:
    return {"id": node_id, "handler": NOOP_HANDLER, "dependencies": dependencies, "config": {}}


def chain(length: int, name: str) -> dict[str, Any]:
    """n0 → n1 → … → n{length-1}."""
    nodes = [node(f"n{i}", [f"n{i - 1}"] if i else []) for i in range(length)]
    return {"name": name, "dag": {"nodes": nodes}}


def layered(layers: int, width: int, name: str) -> dict[str, Any]:
    """`layers` layers of `width` nodes; each node depends on 2 or 3 nodes of the layer before."""
    nodes = []
    for layer in range(layers):
        for i in range(width):
            fan_in = min(width, 2 + i % 2) if layer else 0
            parents = sorted({(i + k) % width for k in range(fan_in)})
            nodes.append(node(f"L{layer}_{i}", [f"L{layer - 1}_{p}" for p in parents]))
    return {"name": name, "dag": {"nodes": nodes}}


def fan_out(width: int, name: str) -> dict[str, Any]:
    """One root, `width` children of it, and one node depending on all of them."""
    children = [node(f"w{i}", ["root"]) for i in range(width)]
    sink = node("sink", [child["id"] for child in children])
    return {"name": name, "dag": {"nodes": [node("root", []), *children, sink]}}


def layered_of_size(size: int, width: int, name: str) -> dict[str, Any]:
    """A layered workflow of `size` nodes (`size` a multiple of `width`)."""
    return layered(max(1, size // width), min(width, size), name)
