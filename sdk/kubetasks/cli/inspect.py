"""``kubetasks batches get`` and ``kubetasks queues list``: read-only views of TaskBatches and
TaskQueues. The shared command machinery (``Cli``, ``api_command``) is in :mod:`.runs`."""

from __future__ import annotations

import datetime as dt

import click

from kubetasks.cli.output import batch_data, batch_details, queue_data, queues_table
from kubetasks.cli.runs import Cli, api_command


@click.group("batches")
def batches_group() -> None:
    """Inspect batch triggers (TaskBatches)."""


@batches_group.command("get")
@api_command
@click.argument("batch_id", metavar="BATCH")
def get_batch(cli: Cli, batch_id: str) -> None:
    """Show a batch: status, progress, counts per state and its runs' names. BATCH is
    namespace/name (as BatchHandle.id gives it) or a name in the namespace."""
    from kubetasks import batch

    cli.client()
    found = batch.retrieve(batch_id)
    if cli.as_table:
        cli.show(batch_details(found, dt.datetime.now(dt.UTC)))
    else:
        cli.emit(batch_data(found))


@click.group("queues")
def queues_group() -> None:
    """Inspect queues (TaskQueues)."""


@queues_group.command("list")
@api_command
def list_queues(cli: Cli) -> None:
    """List the TaskQueues: limits, paused, and the runs running and queued on each (as
    the operator last counted them)."""
    client = cli.client()
    rows = [queue_data(obj) for obj in client.kube.list_objects("taskqueues",
                                                                client.namespace)]
    if not cli.as_table:
        cli.emit(rows)
    elif not rows:
        cli.note(f"no TaskQueues in namespace {client.namespace} (runs without one use a "
                 "queue named after their task, without a limit unless the task sets one)")
    else:
        cli.show(queues_table(rows))
