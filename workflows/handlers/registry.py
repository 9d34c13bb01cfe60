"""The handler registry: a handler is a registered callable from a NodeContext to a JSON output.

A new handler is one `@register("name")` function in a module its app imports in
`AppConfig.ready()` (the engine's own are in workflows/handlers/builtin.py): the API then accepts
its name and the workers run it; the scheduler needs no change.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any


def no_input() -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class NodeContext:
    """What a handler sees: its resolved config, its dependencies' outputs and the workflow input.

    The input is loaded on first use (`load_input`), so that only handlers that read it pay.
    """

    execution_id: str
    node_id: str
    attempt: int
    config: dict[str, Any]
    upstream: dict[str, Any] = field(default_factory=dict)
    load_input: Callable[[], dict[str, Any]] = field(default=no_input, repr=False, compare=False)

    @cached_property
    def input(self) -> dict[str, Any]:
        """The workflow input parameters."""
        return self.load_input()


class HandlerError(Exception):
    """A handler's own failure; its message becomes the node's error."""


Handler = Callable[[NodeContext], Any]
InvocationHook = Callable[[str, NodeContext], None]
_HANDLERS: dict[str, Handler] = {}
_NAMES: dict[str, str] = {}
_INVOCATION_HOOKS: list[InvocationHook] = []


def register(name: str, *aliases: str) -> Callable[[Handler], Handler]:
    """Register a handler under a canonical name and any aliases."""

    def decorate(function: Handler) -> Handler:
        _HANDLERS[name] = function
        for accepted in (name, *aliases):
            _NAMES[accepted] = name
        return function

    return decorate


def handler_names() -> dict[str, str]:
    """Every accepted handler name mapped to its canonical name (what validation accepts)."""
    return dict(_NAMES)


def add_invocation_hook(hook: InvocationHook) -> None:
    """Call `hook(canonical name, context)` before every handler run: how development tools (the
    invocation ledger) observe handlers without the engine or the workers importing them."""
    _INVOCATION_HOOKS.append(hook)


def run_handler(name: str, context: NodeContext) -> Any:
    """Run the handler registered under `name` (canonical or alias), after the invocation hooks."""
    canonical = _NAMES[name]
    for hook in _INVOCATION_HOOKS:
        hook(canonical, context)
    return _HANDLERS[canonical](context)
