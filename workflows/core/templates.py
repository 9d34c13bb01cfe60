"""Find and resolve `{{ node_id.path }}` templates in node configs (pure, stdlib only)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# A path segment is anything but whitespace, dots and braces, so output keys such as
# "content-type" or "@id" can be read; the node id follows the node id rule in dag.py.
_TEMPLATE_SOURCE = r"(?P<template>\{\{\s*(?P<node>[\w-]+)(?P<path>(?:\.[^\s.{}]+)*)\s*\}\})"
_TEMPLATE = re.compile(_TEMPLATE_SOURCE)
_WHOLE_STRING_TEMPLATE = re.compile(rf"\s*{_TEMPLATE_SOURCE}\s*")
_PLAIN_KEY = re.compile(r"[\w-]+")
_LIST_INDEX = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class TemplateRef:
    """One `{{ ... }}` occurrence: whose output it reads, where inside it, and how it was written."""

    node_id: str
    path: tuple[str, ...]
    text: str


class TemplateResolutionError(ValueError):
    """A template points at output that is not there; the message says what is missing."""

    def __init__(self, ref: TemplateRef, reason: str) -> None:
        super().__init__(f"{ref.text}: {reason}")
        self.ref = ref
        self.reason = reason


class TemplateSizeError(ValueError):
    """Resolving would insert more than the budget allows: a template repeated over a large value."""

    def __init__(self, budget: int) -> None:
        super().__init__(f"templates insert more than {budget:,} bytes")
        self.budget = budget


class _Budget:
    """Counts the text templates insert and stops resolution past a limit, before the copies are
    made: a config of a few KB repeating a large output could otherwise take gigabytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit
        self.sizes: dict[int, int] = {}  # id() of a shared value -> its JSON size

    def spend(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise TemplateSizeError(self.limit)

    def value(self, value: object) -> None:
        """A value inserted with its JSON type; one inserted many times is measured once."""
        if isinstance(value, dict | list):
            key = id(value)
            if key not in self.sizes:
                self.sizes[key] = len(_compact_json(value))
            self.spend(self.sizes[key])
        else:
            self.spend(len(_as_text(value)))


@dataclass(frozen=True, slots=True)
class _Location:
    """A place in a JSON value, kept as a link to its parent so deep walks stay linear."""

    parent: _Location | None
    key: str | int

    def render(self) -> str:
        """The path as text, e.g. `messages[0].content`; built only when someone needs it."""
        keys: list[str | int] = []
        location: _Location | None = self
        while location is not None:
            keys.append(location.key)
            location = location.parent
        parts: list[str] = []
        for key in reversed(keys):
            if isinstance(key, int):
                parts.append(f"[{key}]")
            elif isinstance(key, str) and _PLAIN_KEY.fullmatch(key):
                parts.append(f".{key}" if parts else key)
            else:
                parts.append(f"[{json.dumps(str(key), ensure_ascii=False)}]")
        return "".join(parts)


def _map_leaves(value: object, leaf: Callable[[object, _Location | None], object]) -> object:
    """Copy nested dicts and lists with an explicit stack, passing every other value through `leaf`.

    Leaves are visited in document order. An explicit stack because configs and outputs come
    from users and may be nested deeper than the recursion limit.
    """
    root: list[object] = [None]
    stack: list[tuple[object, dict[Any, object] | list[object], Any, _Location | None]] = [
        (value, root, 0, None)
    ]
    while stack:
        item, parent, slot, location = stack.pop()
        if isinstance(item, dict):
            copied: dict[Any, object] = dict.fromkeys(item)
            parent[slot] = copied
            stack.extend(
                (child, copied, key, _Location(location, key)) for key, child in reversed(item.items())
            )
        elif isinstance(item, list):
            items: list[object] = [None] * len(item)
            parent[slot] = items
            stack.extend(
                (item[index], items, index, _Location(location, index))
                for index in range(len(item) - 1, -1, -1)
            )
        else:
            parent[slot] = leaf(item, location)
    return root[0]


def copy_json(value: object) -> object:
    """A deep copy of a JSON value that does not recurse, so specs never share caller data."""
    return _map_leaves(value, lambda leaf, _location: leaf)


def json_type(value: object) -> str:
    """The JSON name of a value's type, for messages that users read."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _reference(match: re.Match[str]) -> TemplateRef:
    path = match["path"]
    return TemplateRef(
        node_id=match["node"],
        path=tuple(path[1:].split(".")) if path else (),
        text=match["template"],
    )


def find_references(config: object) -> list[tuple[str, TemplateRef]]:
    """Every template in the string values of `config`, with the path of the value holding it.

    Paths look like `prompt` or `messages[0].content` (keys that are not plain words are quoted:
    `headers["x.y"]`); a template that is the whole of `config` has the path "". Dict keys are
    not searched: a key is a name, and resolve() never rewrites keys.
    """
    found: list[tuple[str, TemplateRef]] = []

    def collect(leaf: object, location: _Location | None) -> object:
        if isinstance(leaf, str) and "{{" in leaf:
            path = location.render() if location is not None else ""
            found.extend((path, _reference(match)) for match in _TEMPLATE.finditer(leaf))
        return leaf

    _map_leaves(config, collect)
    return found


def resolve(config: object, outputs: Mapping[str, object], max_inserted_bytes: int | None = None) -> object:
    """A copy of `config` with every template replaced by the output it names.

    A string that is one template and nothing else (surrounding whitespace aside) becomes the
    referenced value with its JSON type; otherwise each template is replaced in the text by the
    value (strings as they are, anything else as compact JSON). Inserted values are never scanned
    for templates again, and nothing is evaluated. Values taken from `outputs` are shared, not
    copied. Raises TemplateResolutionError when a referenced value does not exist, and
    TemplateSizeError when the inserted values (counted as compact JSON text) would exceed
    `max_inserted_bytes`.
    """
    budget = _Budget(max_inserted_bytes) if max_inserted_bytes is not None else None

    def substitute(leaf: object, _location: _Location | None) -> object:
        return _resolve_string(leaf, outputs, budget) if isinstance(leaf, str) else leaf

    return _map_leaves(config, substitute)


def _resolve_string(text: str, outputs: Mapping[str, object], budget: _Budget | None) -> object:
    if "{{" not in text:
        return text
    whole = _WHOLE_STRING_TEMPLATE.fullmatch(text)
    if whole is not None:
        value = _lookup(_reference(whole), outputs)
        if budget is not None:
            budget.value(value)
        return value

    def insert(match: re.Match[str]) -> str:
        inserted = _as_text(_lookup(_reference(match), outputs))
        if budget is not None:
            budget.spend(len(inserted))
        return inserted

    return _TEMPLATE.sub(insert, text)


def _lookup(ref: TemplateRef, outputs: Mapping[str, object]) -> object:
    if ref.node_id not in outputs:
        raise TemplateResolutionError(ref, f"node '{ref.node_id}' has no output")
    value = outputs[ref.node_id]
    where = ref.node_id
    for segment in ref.path:
        value = _child(ref, value, segment, where)
        where = f"{where}.{segment}"
    return value


def _child(ref: TemplateRef, value: object, segment: str, where: str) -> object:
    """One step down a template path; digit segments index arrays, all segments name keys."""
    if isinstance(value, dict):
        if segment in value:
            return value[segment]
        raise TemplateResolutionError(ref, f"key '{segment}' not found in {where}")
    if isinstance(value, list):
        if not _LIST_INDEX.fullmatch(segment):
            raise TemplateResolutionError(ref, f"'{segment}' is not an array index, and {where} is an array")
        index = int(segment)
        if index < len(value):
            return value[index]
        raise TemplateResolutionError(ref, f"index {index} out of range in {where} (length {len(value)})")
    raise TemplateResolutionError(
        ref, f"cannot look up '{segment}' in {where}, which is of type {json_type(value)}"
    )


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else _compact_json(value)


def _compact_json(value: object) -> str:
    """`json.dumps(value, separators=(",", ":"), ensure_ascii=False)`, without recursing.

    The stack holds (True, text to emit) or (False, value still to encode).
    """
    parts: list[str] = []
    stack: list[tuple[bool, object]] = [(False, value)]
    while stack:
        is_text, item = stack.pop()
        if is_text:
            parts.append(str(item))
        elif isinstance(item, dict):
            stack.append((True, "}"))
            entries = list(item.items())
            for index in range(len(entries) - 1, -1, -1):
                key, child = entries[index]
                # json.dumps writes non-string keys as the JSON text of the key, in quotes.
                key_text = key if isinstance(key, str) else json.dumps(key)
                stack.append((False, child))
                separator = "," if index else ""
                stack.append((True, f"{separator}{json.dumps(key_text, ensure_ascii=False)}:"))
            stack.append((True, "{"))
        elif isinstance(item, list | tuple):
            stack.append((True, "]"))
            for index in range(len(item) - 1, -1, -1):
                stack.append((False, item[index]))
                if index:
                    stack.append((True, ","))
            stack.append((True, "["))
        else:
            parts.append(json.dumps(item, ensure_ascii=False))
    return "".join(parts)
