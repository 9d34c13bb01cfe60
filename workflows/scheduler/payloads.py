"""Build the tasks of the nodes a batch queued: resolve their templates and hold their configs and
payloads to the size limits; a node whose task cannot be built fails."""

from collections.abc import Mapping
from typing import Any

from workflows.conf import conf
from workflows.core.dag import WorkflowSpec
from workflows.core.limits import LimitExceeded, json_size, over_limit
from workflows.core.templates import TemplateResolutionError, TemplateSizeError, resolve
from workflows.messages import TaskPayload
from workflows.models import NodeStatus
from workflows.scheduler.apply import give_up
from workflows.scheduler.batch import Batch, Dispatch, Queued, group_by_execution
from workflows.selectors import definition_spec


def resolve_queued(batch: Batch) -> None:
    """Resolve the templates of every node queued in the batch, reading the outputs they need
    in one query per execution, and build the tasks; a reference that cannot be resolved
    fails its node."""
    for execution_id, queued in group_by_execution(batch.queued).items():
        execution = batch.executions[execution_id]
        spec = definition_spec(execution.definition_id)
        needed = {dep for item in queued for dep in needed_outputs(spec, item.node.node_id)}
        batch.load_nodes(execution, needed)
        outputs = {
            node_id: node.output
            for node_id, node in batch.nodes[execution_id].items()
            if node_id in needed and node.status == NodeStatus.COMPLETED
        }
        sizes: dict[str, int] = {}
        for item in queued:
            build_task(item, spec, outputs, sizes, batch)


def build_task(
    item: Queued, spec: WorkflowSpec, outputs: dict[str, Any], sizes: dict[str, int], batch: Batch
) -> None:
    """Resolve the node's templates and build its task, or fail the node when a template
    cannot be resolved or the config or the whole payload is over its limit. `sizes` keeps
    the outputs measured in this batch (by node id), so each is measured at most once."""
    execution, node = item.execution, item.node
    node_spec = spec.node(node.node_id)
    upstream = {dep: outputs.get(dep) for dep in node_spec.dependencies}
    try:
        node.config, config_bytes = resolved_config(node_spec.config, node_spec.references, outputs)
        check_payload(config_bytes, upstream, sizes)
    except (TemplateResolutionError, LimitExceeded) as exc:
        give_up(execution, node, str(exc), batch)
        return
    payload: TaskPayload = {
        "execution_id": str(execution.pk),
        "node_id": node.node_id,
        "position": node.position,
        "attempt": node.attempt,
        "handler": node.handler,
        "config": node.config,
        "upstream": upstream,
        "timeout_seconds": node_spec.timeout_seconds or conf().node_timeout_seconds,
    }
    batch.dispatches.append(Dispatch(payload=payload, countdown_s=item.countdown_s))


def resolved_config(
    config: dict[str, Any], references: tuple[str, ...], outputs: Mapping[str, Any]
) -> tuple[dict[str, Any], int]:
    """The node's config with its templates resolved, and a bound on its size in bytes.

    A config without templates was bounded at submit (WORKFLOW_MAX_CONFIG_BYTES) and is not
    measured again; a templated one is resolved within the limit (TemplateSizeError stops a
    template repeated over a large output before the copies are made), then measured."""
    if not references:
        return config, conf().max_config_bytes
    limit, setting = conf().max_resolved_config_bytes, "WORKFLOW_MAX_RESOLVED_CONFIG_BYTES"
    try:
        resolved = resolve(config, outputs, max_inserted_bytes=limit)
    except TemplateSizeError:
        raise LimitExceeded(
            f"config after templates is over the limit of {limit:,} bytes ({setting}): its templates "
            f"insert more than that"
        ) from None
    size = json_size(resolved)
    if size > limit:
        raise LimitExceeded(over_limit("config after templates", size, limit, setting))
    assert isinstance(resolved, dict)
    return resolved, size


def check_payload(config_bytes: int, upstream: Mapping[str, Any], sizes: dict[str, int]) -> None:
    """Raise LimitExceeded when the task payload (config plus the upstream outputs it carries) is
    over its bound. Outputs are bounded by the worker (WORKFLOW_MAX_OUTPUT_BYTES), so they are
    measured only when that many maximal outputs could exceed the bound: with the default
    limits, never for a node of 15 dependencies or fewer."""
    limit = conf().max_node_payload_bytes
    if config_bytes + len(upstream) * conf().max_output_bytes <= limit:
        return
    total = config_bytes
    for node_id, output in upstream.items():
        if node_id not in sizes:
            sizes[node_id] = json_size(output)
        total += sizes[node_id]
    if total > limit:
        what = "the task payload (config and upstream outputs)"
        raise LimitExceeded(over_limit(what, total, limit, "WORKFLOW_MAX_NODE_PAYLOAD_BYTES"))


def needed_outputs(spec: WorkflowSpec, node_id: str) -> set[str]:
    """The nodes whose outputs a node's task carries: its dependencies and what its templates read."""
    node_spec = spec.node(node_id)
    return {*node_spec.dependencies, *node_spec.references}
