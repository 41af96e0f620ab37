"""The ``kubetasks`` command line."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from kubetasks.devcluster.errors import ComponentError


@click.group()
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """kubetasks: Kubernetes-native background tasks for Python."""
    ctx.obj = {"debug": debug}


@main.command()
@click.option("--namespace", "namespaces", multiple=True,
              help="Namespace to watch (repeatable); default: KUBETASKS_NAMESPACES, else all.")
@click.option("--redis-url", default=None, help="Redis URL (KUBETASKS_REDIS_URL).")
@click.option("--liveness", default="http://0.0.0.0:8080/healthz", show_default=True,
              help="Liveness endpoint URL; empty to disable.")
@click.option("--verbose", is_flag=True, help="Log every handler call (noisy).")
def operator(namespaces: tuple[str, ...], redis_url: str | None, liveness: str,
             verbose: bool) -> None:
    """Run the operator (the same as `kopf run -m kubetasks_operator.handlers`)."""
    import os

    import kopf

    if namespaces:
        os.environ["KUBETASKS_NAMESPACES"] = ",".join(namespaces)
    if redis_url:
        os.environ["KUBETASKS_REDIS_URL"] = redis_url
    from kubetasks_operator.settings import OperatorSettings

    settings = OperatorSettings.from_env()
    import logging

    import kubetasks_operator.handlers  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=verbose, debug=False)
    if not verbose:
        # Kopf logs every watch event and handler call at INFO/DEBUG: too much at scale.
        logging.getLogger("kopf").setLevel(logging.WARNING)
        logging.getLogger("kubetasks").setLevel(logging.INFO)
    kopf.run(
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=liveness or None,
    )


@main.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Where the local cluster keeps its data and logs (default: a temp dir).")
@click.option("--once", is_flag=True,
              help="Start everything, print the cluster, then stop (a smoke test).")
@click.pass_context
def dev(ctx: click.Context, workdir: Path | None, once: bool) -> None:
    """Run kubetasks locally: control plane, node agent, Redis, S3 and the CRDs."""
    from kubetasks.devcluster.local import LocalCluster

    local = LocalCluster(workdir)
    click.echo("starting the local control plane, node agent, Redis and S3 server...", err=True)
    try:
        local.start()
    except ComponentError as exc:
        if ctx.obj["debug"]:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    try:
        click.echo(f"ready in {local.started_seconds:.1f} s; workdir {local.workdir}", err=True)
        click.echo(local.control_plane.kubectl("get", "nodes,crds"))
        click.echo("environment for kubetasks processes and kubectl:")
        for key, value in local.env().items():
            click.echo(f"  export {key}={value}")
        if once:
            return
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        click.echo("running; press Ctrl-C to stop everything", err=True)
        stop.wait()
    finally:
        click.echo("stopping...", err=True)
        local.stop()
if __name__ == "__main__":
    main()
