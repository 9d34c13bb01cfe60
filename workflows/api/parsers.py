"""The API's JSON parser: hostile bodies become a 400 ParseError that names the problem and where it is.

Python's json module recurses, so very deep input raises RecursionError instead of a ValueError;
everything downstream (the database, Kafka, Celery, the renderer) encodes JSON recursively too, so
bodies may nest at most MAX_JSON_DEPTH levels. Strings may not hold NUL (PostgreSQL cannot store
it) or unpaired surrogates (not valid Unicode, so not encodable as UTF-8), and numbers are finite.
"""

import json
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from workflows.core.templates import _Location

MAX_JSON_DEPTH = 100
_SHOWN_PATH_LENGTH = 80
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSENDABLE = re.compile("[\x00\ud800-\udfff]")
_TOO_DEEP = f"JSON may nest at most {MAX_JSON_DEPTH} levels"


class JsonBodyError(ParseError):
    """A body that is JSON but that the engine cannot take, located by its JSON path."""

    def __init__(self, field: str, problem: str, code: str) -> None:
        where = field if len(field) <= _SHOWN_PATH_LENGTH else field[:_SHOWN_PATH_LENGTH] + "…"
        super().__init__(f"{where}: {problem}", code=code)
        self.errors = [{"field": field, "message": problem}]


class JSONParser(parsers.JSONParser):
    """DRF's JSONParser, with bounded depth and clear messages for everything json.loads refuses."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> object:
        encoding = parsers.get_encoding(parser_context or {})
        try:
            text = stream.read().decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(f"request body is not valid JSON: {exc}") from None
        return loads(text)


def loads(text: str, field: str | None = None) -> object:
    """Decode JSON text the way request bodies are: bounded depth, finite numbers, storable strings.

    `field` names where the text came from (an HTML form's field) for messages and paths; None
    means the request body. Raises ParseError, or JsonBodyError naming the path of the problem.
    """
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise JsonBodyError(field or "body", _TOO_DEEP, "too_deep") from None
    except ValueError as exc:  # JSONDecodeError, and the two hooks below
        raise ParseError(f"{field or 'request body'} is not valid JSON: {exc}") from None
    _check(data, _Location(None, field) if field else None)
    return data


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _check(data: object, root: _Location | None) -> None:
    """Raise JsonBodyError for a container nested too deep, or a string the engine cannot store.

    Both tests are quick scans; only a refused body pays for the walk that locates the problem.
    """
    if _depth_exceeds(data):
        found = _first(data, _too_deep, root)
        raise JsonBodyError(found[0] if found else "body", _TOO_DEEP, "too_deep")
    text = json.dumps(data, ensure_ascii=False)  # no RecursionError: the depth is bounded now
    if "\\u0000" not in text and (text.isascii() or not _SURROGATE.search(text)):
        return
    found = _first(data, _unstorable, root)
    if found is not None:  # else a false alarm: an escaped backslash followed by "u0000"
        field, value = found
        if "\x00" in str(value):
            raise JsonBodyError(field, "a string may not contain a NUL character (\\u0000)", "invalid_text")
        problem = "a string may not contain an unpaired surrogate (\\ud800-\\udfff): it is not valid Unicode"
        raise JsonBodyError(field, problem, "invalid_text")


def _too_deep(value: object, depth: int) -> bool:
    return depth > MAX_JSON_DEPTH and isinstance(value, dict | list)


def _unstorable(value: object, depth: int) -> bool:
    return isinstance(value, str) and ("\x00" in value or bool(_SURROGATE.search(value)))


def _depth_exceeds(data: object) -> bool:
    """Whether containers nest deeper than MAX_JSON_DEPTH, one level at a time (no recursion)."""
    level = [data] if isinstance(data, dict | list) else []
    for _ in range(MAX_JSON_DEPTH):
        level = [
            child
            for container in level
            for child in (container.values() if isinstance(container, dict) else container)
            if isinstance(child, dict | list)
        ]
    return bool(level)


def _first(
    data: object, flagged: Callable[[object, int], bool], root: _Location | None
) -> tuple[str, object] | None:
    """The path and value of a value or key that is `flagged(value, depth)`, or None.

    An explicit stack, since the body may be deep; a key is reported at the path of its entry.
    """
    if flagged(data, 1):
        return (root.render() if root else "body"), data
    stack: list[tuple[object, int, _Location | None]] = [(data, 1, root)]
    while stack:
        container, depth, location = stack.pop()
        if isinstance(container, dict):
            entries: Iterable[tuple[Any, object]] = container.items()
        elif isinstance(container, list):
            entries = enumerate(container)
        else:
            continue
        for key, child in entries:
            for suspect in (key, child):
                if flagged(suspect, depth + 1):
                    return _printable(_Location(location, key).render()), suspect
            if isinstance(child, dict | list):
                stack.append((child, depth + 1, _Location(location, key)))
    return None


def _printable(text: str) -> str:
    """User text for a message, with the characters that cannot be sent written as escapes."""
    return _UNSENDABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
