"""Size limits on what a workflow carries: how large a JSON value is as sent, and the sentence
naming the limit it broke (pure, stdlib only)."""

import json


class LimitExceeded(ValueError):
    """A value over its size limit; the message names the value, the limit and its setting."""


def json_size(value: object) -> int:
    """The bytes `value` takes in a message: compact JSON, non-ASCII escaped, as messages.encode
    writes it (so ASCII text, one byte a character)."""
    return len(json.dumps(value, separators=(",", ":"), default=str))


def over_limit(what: str, size: int, limit: int, setting: str) -> str:
    """The sentence for a value over its limit, naming the setting that raises it."""
    return f"{what} is {size:,} bytes as JSON, over the limit of {limit:,} bytes ({setting})"


def size_problem(what: str, value: object, limit: int, setting: str) -> str | None:
    """The sentence for `value` if it is over `limit`, else None."""
    size = json_size(value)
    return over_limit(what, size, limit, setting) if size > limit else None
