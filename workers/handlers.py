"""The handler registry: a handler is a registered callable from a NodeContext to a JSON output.

A new handler is one `@register("name")` function; the scheduler needs no change.
"""

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from workflows.conf import conf


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
    invocation ledger) observe handlers without the engine importing them."""
    _INVOCATION_HOOKS.append(hook)


def run_handler(name: str, context: NodeContext) -> Any:
    """Run the handler registered under `name` (canonical or alias), after the invocation hooks."""
    canonical = _NAMES[name]
    for hook in _INVOCATION_HOOKS:
        hook(canonical, context)
    return _HANDLERS[canonical](context)


def mock_latency(config: dict[str, Any]) -> None:
    """Sleep like a remote call would: per-node `mock_latency_seconds` (number or [low, high]),
    else the global WORKFLOW_MOCK_LATENCY."""
    value = config.get("mock_latency_seconds")
    if isinstance(value, int | float) and not isinstance(value, bool):
        low = high = float(value)
    elif isinstance(value, list) and len(value) == 2:
        low, high = float(value[0]), float(value[1])
    else:
        low, high = conf().mock_latency_seconds
    delay = random.uniform(low, high)
    if delay > 0:
        time.sleep(delay)


def simulated_failure(context: NodeContext) -> None:
    """Mocks fail on demand: `fail_attempts: N` fails the first N attempts (for retry tests)."""
    fail_attempts = context.config.get("fail_attempts", 0)
    if isinstance(fail_attempts, int) and context.attempt <= fail_attempts:
        raise HandlerError(f"simulated failure on attempt {context.attempt} of {context.node_id}")


@register("input")
def input_handler(context: NodeContext) -> dict[str, Any]:
    """The workflow's input parameters, overridden by the node's own config."""
    return {**context.input, **context.config}


@register("output")
def output_handler(context: NodeContext) -> dict[str, Any]:
    """The outputs of the node's dependencies, keyed by node id."""
    return dict(context.upstream)


@register("call_external_service", "external_api")
def call_external_service(context: NodeContext) -> dict[str, Any]:
    """A mocked HTTP call: sleeps like one and answers like one; `status_code` >= 400 fails it."""
    mock_latency(context.config)
    simulated_failure(context)
    url = context.config.get("url", "")
    status = context.config.get("status_code", 200)
    if isinstance(status, int) and status >= 400:
        raise HandlerError(f"HTTP {status} from {url or 'the service'}")
    return {
        "status": status,
        "url": url,
        "method": context.config.get("method", "GET"),
        "data": {"source": url, "node": context.node_id, "payload": context.config.get("body")},
    }


@register("llm")
def llm(context: NodeContext) -> dict[str, Any]:
    """A mocked LLM call: echoes the prompt, counts tokens as words."""
    mock_latency(context.config)
    simulated_failure(context)
    prompt = str(context.config.get("prompt", ""))
    return {
        "response": f"Mock response to: {prompt}",
        "model": context.config.get("model", "mock-llm-1"),
        "tokens_used": len(prompt.split()) + 12,
        "prompt": prompt,
    }
