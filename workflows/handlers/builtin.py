"""The built-in handlers: mocks of an external call and an LLM, and the input and output nodes.

Imported by WorkflowsConfig.ready(), so that every process (API, scheduler, workers) knows them.
"""

import random
import time
from typing import Any

from workflows.conf import conf
from workflows.handlers.registry import HandlerError, NodeContext, register


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
