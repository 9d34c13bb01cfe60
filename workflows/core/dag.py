"""Parse and validate a submitted workflow into an immutable WorkflowSpec (pure, stdlib only)."""

from __future__ import annotations

import gc
import heapq
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import InitVar, dataclass, field
from types import MappingProxyType

from workflows.core.limits import size_problem
from workflows.core.retry import RetryPolicy, RetryPolicyError
from workflows.core.templates import TemplateRef, copy_json, find_references, json_type

MAX_NAME_LENGTH = 200
MAX_TIMEOUT_S = 86_400.0
_NODE_ID = re.compile(r"[\w-]{1,128}")
_NODE_ID_RULE = "1-128 letters, digits, '_' or '-'"
_SHOWN_TEXT_LENGTH = 40
_SHOWN_CYCLE_LENGTH = 20


@dataclass(frozen=True)
class FieldError:
    """One problem in a submitted workflow, located by a JSON path such as `dag.nodes[2].handler`."""

    field: str
    message: str
    node: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"field": self.field, "message": self.message, "node": self.node}


class DagValidationError(Exception):
    """The submitted workflow is invalid: `detail` is one sentence for people, `errors` lists all."""

    def __init__(self, errors: list[FieldError]) -> None:
        if not errors:
            raise ValueError("DagValidationError needs at least one FieldError")
        first = errors[0]
        detail = f"{first.message} (at {first.field})" if first.field else first.message
        if len(errors) > 1:
            more = len(errors) - 1
            detail += f"; and {more} more problem{'s' if more > 1 else ''}"
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A validated node: canonical handler, effective retry and timeout, nodes its templates read."""

    id: str
    handler: str
    dependencies: tuple[str, ...] = ()
    config: dict[str, object] = field(default_factory=dict)
    retry: RetryPolicy | None = None
    timeout_seconds: float | None = None
    references: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "handler": self.handler,
            "dependencies": list(self.dependencies),
            "config": copy_json(self.config),
            "retry": self.retry.to_json() if self.retry is not None else None,
            "timeout_seconds": self.timeout_seconds,
        }


@dataclass(frozen=True)
class WorkflowSpec:
    """A validated workflow; `nodes` is in topological order and `children` indexes the edges."""

    name: str
    nodes: tuple[NodeSpec, ...]
    input: dict[str, object] = field(default_factory=dict)
    children: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _by_id: Mapping[str, NodeSpec] = field(init=False, repr=False, compare=False)
    known_children: InitVar[Mapping[str, list[str]] | None] = None

    def __post_init__(self, known_children: Mapping[str, list[str]] | None) -> None:
        """`known_children` saves recomputing the edges when the parser has them already."""
        grouped = _children(self.nodes) if known_children is None else known_children
        frozen_children = {node.id: tuple(grouped.get(node.id, ())) for node in self.nodes}
        object.__setattr__(self, "children", MappingProxyType(frozen_children))
        object.__setattr__(self, "_by_id", MappingProxyType({node.id: node for node in self.nodes}))

    def node(self, node_id: str) -> NodeSpec:
        """The node with this id; KeyError if there is none."""
        return self._by_id[node_id]

    def to_json(self) -> dict[str, object]:
        """The normalized definition as plain JSON, which parse_workflow accepts again unchanged."""
        return {
            "name": self.name,
            "input": copy_json(self.input),
            "dag": {"nodes": [node.to_json() for node in self.nodes]},
        }


def parse_workflow(
    data: object, *, handlers: Mapping[str, str], max_config_bytes: int | None = None
) -> WorkflowSpec:
    """Validate a submitted workflow and return its normalized, immutable form.

    `data` is what a JSON decoder produced; `handlers` maps every accepted handler name,
    aliases included, to its canonical name. A JSON null counts as an absent optional field.
    Unknown keys are ignored at every level except inside `retry`, so clients may attach
    metadata (labels, positions); to_json() drops them. A node's `retry` and `timeout_seconds`
    fall back to `defaults`, and the spec holds the effective values. Every problem that can be
    found is collected before DagValidationError is raised; template ancestry is checked only
    when the graph has no cycle. A node config larger than `max_config_bytes` (as compact JSON)
    is an error naming the limit.
    """
    with _cyclic_gc_paused():
        return _parse(data, handlers, max_config_bytes)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Parsing allocates a few objects per node and creates no reference cycles; left on, the
    cyclic garbage collector rescans them over and over (about 40% of the time at 100k nodes)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse(data: object, handlers: Mapping[str, str], max_config_bytes: int | None) -> WorkflowSpec:
    if not isinstance(data, dict):
        raise DagValidationError([FieldError("", f"a workflow must be a JSON object, got {json_type(data)}")])
    errors: list[FieldError] = []
    name = _parse_name(data.get("name"), errors)
    workflow_input = _optional_object(data.get("input"), "input", None, errors)
    defaults = _optional_object(data.get("defaults"), "defaults", None, errors)
    raw_nodes = _raw_nodes(data.get("dag"), errors)
    parser = _NodeParser(
        handlers=handlers,
        positions=_first_positions(raw_nodes),
        default_retry=_parse_retry(defaults.get("retry"), "defaults", None, errors),
        default_timeout=_parse_timeout(defaults.get("timeout_seconds"), "defaults", None, errors),
        errors=errors,
        max_config_bytes=max_config_bytes,
    )
    nodes: dict[str, NodeSpec] = {}
    for position, raw in enumerate(raw_nodes):
        node = parser.parse(raw, position)
        if node is not None:
            nodes[node.id] = node
    children = _children(nodes.values())
    order = _topological_order(nodes, children, parser.positions, raw_nodes, errors)
    if order is not None:
        errors.extend(_reference_errors(order, children, parser))
    if errors:
        raise DagValidationError(errors)
    assert order is not None  # a cycle always adds an error
    return WorkflowSpec(name=name, nodes=tuple(order), input=workflow_input, known_children=children)


def _parse_name(value: object, errors: list[FieldError]) -> str:
    if value is None:
        errors.append(FieldError("name", "the workflow needs a name"))
        return ""
    if not isinstance(value, str):
        errors.append(FieldError("name", f"name must be a string, got {json_type(value)}"))
        return ""
    name = value.strip()
    if not name:
        errors.append(FieldError("name", "name must not be empty"))
    elif len(name) > MAX_NAME_LENGTH:
        errors.append(
            FieldError("name", f"name must be at most {MAX_NAME_LENGTH} characters, got {len(name)}")
        )
    return name


def _optional_object(
    value: object, path: str, node_id: str | None, errors: list[FieldError]
) -> dict[str, object]:
    """A copy of an optional JSON object (empty when absent), or an error naming the field."""
    if value is None or value == {}:
        return {}
    if not isinstance(value, dict):
        key = path.rsplit(".", 1)[-1]
        problem = f"{key} must be an object, got {json_type(value)}"
        errors.append(FieldError(path, _about(node_id, problem), _valid_id(node_id)))
        return {}
    copied = copy_json(value)
    assert isinstance(copied, dict)
    return copied


def _raw_nodes(dag: object, errors: list[FieldError]) -> list[object]:
    if dag is None:
        errors.append(FieldError("dag", "the workflow has no dag"))
        return []
    if not isinstance(dag, dict):
        errors.append(FieldError("dag", f"dag must be an object, got {json_type(dag)}"))
        return []
    nodes = dag.get("nodes")
    if nodes is not None and not isinstance(nodes, list):
        errors.append(FieldError("dag.nodes", f"dag.nodes must be an array, got {json_type(nodes)}"))
        return []
    if not nodes:
        errors.append(FieldError("dag.nodes", "workflow has no nodes"))
        return []
    return nodes


def _first_positions(raw_nodes: list[object]) -> dict[str, int]:
    """Where each string id first appears: known before any node is checked, so that
    dependencies can point forwards and duplicates can name the first occurrence."""
    positions: dict[str, int] = {}
    for position, raw in enumerate(raw_nodes):
        if isinstance(raw, dict) and isinstance(node_id := raw.get("id"), str):
            positions.setdefault(node_id, position)
    return positions


def _parse_retry(
    value: object, base: str, node_id: str | None, errors: list[FieldError]
) -> RetryPolicy | None:
    if value is None:
        return None
    try:
        return RetryPolicy.from_json(value, f"{base}.retry")
    except RetryPolicyError as exc:
        errors.append(FieldError(exc.field, _about(node_id, exc.reason), _valid_id(node_id)))
        return None


def _parse_timeout(value: object, base: str, node_id: str | None, errors: list[FieldError]) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problem = f"timeout_seconds must be a number, got {json_type(value)}"
    elif not (0 < value <= MAX_TIMEOUT_S):  # also rejects NaN
        problem = f"timeout_seconds must be more than 0 and at most {MAX_TIMEOUT_S:g}, got {value!r}"
    else:
        return float(value)
    errors.append(FieldError(f"{base}.timeout_seconds", _about(node_id, problem), _valid_id(node_id)))
    return None


@dataclass
class _NodeParser:
    """Checks nodes one at a time against what is known about all of them.

    Templates found in configs are kept aside (`templates`) for the ancestry check, which
    needs the whole graph.
    """

    handlers: Mapping[str, str]
    positions: dict[str, int]
    default_retry: RetryPolicy | None
    default_timeout: float | None
    errors: list[FieldError]
    max_config_bytes: int | None = None
    templates: dict[str, list[tuple[str, TemplateRef]]] = field(default_factory=dict)

    def parse(self, raw: object, position: int) -> NodeSpec | None:
        """The node, or None when it cannot join the graph (no string id, or a repeated one)."""
        base = f"dag.nodes[{position}]"
        if not isinstance(raw, dict):
            self.errors.append(FieldError(base, f"a node must be an object, got {json_type(raw)}"))
            return None
        node_id = self._id(raw.get("id"), base)
        handler = self._handler(raw.get("handler"), base, node_id)
        dependencies = self._dependencies(raw.get("dependencies"), base, node_id)
        config = _optional_object(raw.get("config"), f"{base}.config", node_id, self.errors)
        if config and self.max_config_bytes is not None:
            self._check_size(config, f"{base}.config", node_id, self.max_config_bytes)
        retry = _parse_retry(raw.get("retry"), base, node_id, self.errors)
        timeout = _parse_timeout(raw.get("timeout_seconds"), base, node_id, self.errors)
        if node_id is None:
            return None
        first = self.positions[node_id]
        if first != position:
            problem = f"node id '{_shorten(node_id)}' is used twice: dag.nodes[{first}] and {base}"
            self.errors.append(FieldError(f"{base}.id", problem, _valid_id(node_id)))
            return None
        templates = find_references(config) if config else []
        if templates:
            self.templates[node_id] = [(_join(f"{base}.config", inner), ref) for inner, ref in templates]
        return NodeSpec(
            id=node_id,
            handler=handler,
            dependencies=dependencies,
            config=config,
            retry=self.default_retry if retry is None else retry,
            timeout_seconds=self.default_timeout if timeout is None else timeout,
            references=tuple(dict.fromkeys(ref.node_id for _, ref in templates)) if templates else (),
        )

    def _check_size(
        self, config: dict[str, object], field_path: str, node_id: str | None, limit: int
    ) -> None:
        """A config is refused here when too large: past this point it is copied into the
        definition, a task and a task.dispatch message, and Kafka refuses messages over 1 MB."""
        problem = size_problem("config", config, limit, "WORKFLOW_MAX_CONFIG_BYTES")
        if problem is not None:
            self._fail(field_path, node_id, problem)

    def _fail(self, field_path: str, node_id: str | None, problem: str) -> None:
        self.errors.append(FieldError(field_path, _about(node_id, problem), _valid_id(node_id)))

    def _id(self, value: object, base: str) -> str | None:
        """The id if it is a string, even a malformed one, so that edges to it still resolve."""
        if isinstance(value, str):
            if not _NODE_ID.fullmatch(value):
                self._fail(
                    f"{base}.id", None, f"node id '{_shorten(value)}' is not allowed: use {_NODE_ID_RULE}"
                )
            return value
        if value is None:
            self._fail(f"{base}.id", None, "a node has no id")
        else:
            self._fail(f"{base}.id", None, f"node id must be a string, got {json_type(value)}")
        return None

    def _handler(self, value: object, base: str, node_id: str | None) -> str:
        if isinstance(value, str) and value in self.handlers:
            return self.handlers[value]
        known = ", ".join(sorted(set(self.handlers.values())))
        if value is None:
            problem = f"handler is missing; known handlers: {known}"
        elif not isinstance(value, str):
            problem = f"handler must be a string, got {json_type(value)}"
        else:
            problem = f"unknown handler '{_shorten(value)}'; known handlers: {known}"
        self._fail(f"{base}.handler", node_id, problem)
        return ""

    def _dependencies(self, value: object, base: str, node_id: str | None) -> tuple[str, ...]:
        """The valid dependencies; each invalid entry is reported and left out of the graph."""
        if value is None:
            return ()
        if not isinstance(value, list):
            problem = f"dependencies must be an array of node ids, got {json_type(value)}"
            self._fail(f"{base}.dependencies", node_id, problem)
            return ()
        if all(type(dependency) is str for dependency in value):  # the usual case, checked in C
            named = set(value)
            if len(named) == len(value) and node_id not in named and named <= self.positions.keys():
                return tuple(value)
        valid: dict[str, None] = {}
        for index, dependency in enumerate(value):
            if not isinstance(dependency, str):
                problem = f"dependencies[{index}] must be a node id string, got {json_type(dependency)}"
            elif dependency in valid:
                problem = f"dependency '{_shorten(dependency)}' is listed more than once"
            elif dependency == node_id:
                problem = "depends on itself"
            elif dependency not in self.positions:
                problem = f"depends on unknown node '{_shorten(dependency)}'"
            else:
                valid[dependency] = None
                continue
            self._fail(f"{base}.dependencies[{index}]", node_id, problem)
        return tuple(valid)


def _children(nodes: Iterable[NodeSpec]) -> dict[str, list[str]]:
    """Each node's dependents, for nodes that have any."""
    children: dict[str, list[str]] = {}
    for node in nodes:
        for dependency in node.dependencies:
            children.setdefault(dependency, []).append(node.id)
    return children


def _topological_order(
    nodes: Mapping[str, NodeSpec],
    children: Mapping[str, list[str]],
    positions: Mapping[str, int],
    raw_nodes: list[object],
    errors: list[FieldError],
) -> list[NodeSpec] | None:
    """Kahn's algorithm, or None after reporting a cycle.

    Among ready nodes the earliest submitted goes first, so a definition that is already in
    topological order (to_json's output, for one) keeps its order; such a definition, the usual
    one, is recognised in one pass over the edges and returned as it is.
    """
    submitted = list(nodes.values())
    if all(positions[dep] < positions[node.id] for node in submitted for dep in node.dependencies):
        return submitted  # already in topological order: what Kahn's would return
    by_position = {positions[node_id]: node for node_id, node in nodes.items()}
    waiting_on = {node_id: len(node.dependencies) for node_id, node in nodes.items()}
    ready = [positions[node_id] for node_id, count in waiting_on.items() if not count]
    heapq.heapify(ready)
    order: list[NodeSpec] = []
    while ready:
        node = by_position[heapq.heappop(ready)]
        order.append(node)
        for child in children.get(node.id, ()):
            waiting_on[child] -= 1
            if not waiting_on[child]:
                heapq.heappush(ready, positions[child])
    if len(order) == len(nodes):
        return order
    unsorted = {node_id for node_id, count in waiting_on.items() if count}
    errors.append(_cycle_error(nodes, unsorted, positions, raw_nodes))
    return None


def _cycle_error(
    nodes: Mapping[str, NodeSpec], unsorted: set[str], positions: Mapping[str, int], raw_nodes: list[object]
) -> FieldError:
    """Name one cycle among the nodes Kahn could not sort.

    Each of them still waits on another of them, so following those dependencies from any
    of them must come back to a node already seen.
    """
    current = min(unsorted, key=positions.__getitem__)
    seen_at: dict[str, int] = {}
    walk: list[str] = []
    while current not in seen_at:
        seen_at[current] = len(walk)
        walk.append(current)
        current = next(dep for dep in nodes[current].dependencies if dep in unsorted)
    cycle = walk[seen_at[current] :]
    cycle.reverse()  # the walk followed dependencies; show the direction work flows in
    first = min(range(len(cycle)), key=lambda index: positions[cycle[index]])
    cycle = cycle[first:] + cycle[:first]
    head = positions[cycle[0]]
    raw_head = raw_nodes[head]
    assert isinstance(raw_head, dict)
    closing = raw_head["dependencies"].index(cycle[-1])
    return FieldError(
        f"dag.nodes[{head}].dependencies[{closing}]", f"cycle detected: {_cycle_text(cycle)}", cycle[0]
    )


def _cycle_text(cycle: list[str]) -> str:
    """`A -> B -> C -> A`; a very long cycle is elided in the middle to keep messages small."""
    if len(cycle) > _SHOWN_CYCLE_LENGTH:
        half = _SHOWN_CYCLE_LENGTH // 2
        cycle = [*cycle[:half], f"… {len(cycle) - 2 * half} more …", *cycle[-half:]]
    return " -> ".join([*cycle, cycle[0]])


def _reference_errors(
    order: list[NodeSpec], children: Mapping[str, list[str]], parser: _NodeParser
) -> list[FieldError]:
    """Templates must read nodes upstream of the node using them, so the output exists in time."""
    rank = {node.id: index for index, node in enumerate(order)}
    dependencies = {node.id: node.dependencies for node in order if node.id in parser.templates}
    queries: dict[str, set[str]] = {}
    for node_id, templates in parser.templates.items():
        for _, ref in templates:
            target = ref.node_id
            if target in rank and target not in dependencies[node_id] and rank[target] < rank[node_id]:
                queries.setdefault(target, set()).add(node_id)
    confirmed = _ancestor_pairs(queries, children, rank)
    errors: list[FieldError] = []
    for node_id, templates in parser.templates.items():
        for path, ref in templates:
            target = ref.node_id
            if target == node_id:
                problem = f"template {ref.text} refers to the node's own output"
            elif target not in rank:
                problem = f"template {ref.text} refers to unknown node '{_shorten(target)}'"
            elif target in dependencies[node_id] or (target, node_id) in confirmed:
                continue
            else:
                problem = (
                    f"template {ref.text} refers to node '{_shorten(target)}', which is not upstream of "
                    f"'{_shorten(node_id)}'; add it to dependencies, directly or through another node"
                )
            errors.append(FieldError(path, _about(node_id, problem), _valid_id(node_id)))
    return errors


def _ancestor_pairs(
    queries: Mapping[str, set[str]], children: Mapping[str, list[str]], rank: Mapping[str, int]
) -> set[tuple[str, str]]:
    """The (ancestor, descendant) pairs among `queries` that hold.

    One forward search per referenced node, cut at the topological rank of its furthest
    referrer and stopped once every referrer is found: a node read by many (the usual
    `input` node) costs one search, and a reference to a close ancestor costs little.
    """
    confirmed: set[tuple[str, str]] = set()
    for target, referrers in queries.items():
        limit = max(rank[referrer] for referrer in referrers)
        missing = set(referrers)
        seen = {target}
        stack = [target]
        while stack and missing:
            for child in children.get(stack.pop(), ()):
                if child not in seen and rank[child] <= limit:
                    seen.add(child)
                    missing.discard(child)
                    stack.append(child)
        confirmed.update((target, referrer) for referrer in referrers - missing)
    return confirmed


def is_node_id(value: str) -> bool:
    """Whether a string follows the node id rule (the messages about a node are checked with it)."""
    return _NODE_ID.fullmatch(value) is not None


def _valid_id(node_id: str | None) -> str | None:
    """The id to put in FieldError.node: only one a client could look the node up by."""
    return node_id if node_id is not None and _NODE_ID.fullmatch(node_id) else None


def _about(node_id: str | None, problem: str) -> str:
    return f"node '{_shorten(node_id)}': {problem}" if node_id is not None else problem


def _join(base: str, inner: str) -> str:
    if not inner:
        return base
    return f"{base}{inner}" if inner.startswith("[") else f"{base}.{inner}"


def _shorten(text: str) -> str:
    """User text quoted in a message, cut so that a huge id cannot flood logs and responses."""
    if len(text) <= _SHOWN_TEXT_LENGTH:
        return text
    return text[:_SHOWN_TEXT_LENGTH] + "…"
