"""The ``kubetasks`` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click


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
@click.argument("modules", nargs=-1)
@click.option("--run", "driver", default=None, metavar="MODULE:FUNCTION",
              help="After deploying, call this function (it triggers runs and may print "
                   "results); its int return value is the exit code.")
@click.option("--once", is_flag=True,
              help="Stop everything after --run returns (or right after start without it).")
@click.option("--namespace", default="default", show_default=True,
              help="Namespace the tasks are deployed to and the runs live in.")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Where the local cluster keeps its data and logs (default: a temp dir).")
@click.pass_context
def dev(ctx: click.Context, modules: tuple[str, ...], driver: str | None, once: bool,
        namespace: str, workdir: Path | None) -> None:
    """Run kubetasks locally: control plane, node agent, Redis, S3, the CRDs and the
    operator; deploy the tasks of MODULES (import paths, from the current directory) and
    show runs live until Ctrl-C.

    \b
    kubetasks dev examples.tasks --run examples.main:main --once
    """
    from kubetasks import devmode
    from kubetasks.devcluster.errors import ComponentError
    from kubetasks.errors import KubetasksError

    try:
        code = devmode.run(list(modules), driver, once, workdir, namespace)
    except (ComponentError, KubetasksError) as exc:
        if ctx.obj["debug"]:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    sys.exit(code)


@main.command()
def worker() -> None:
    """Run one attempt of a task (the entrypoint of an attempt's pod)."""
    from kubetasks.worker import main as worker_main

    worker_main()


@main.command()
@click.option("--image", required=True, help="Container image that holds the tasks' code.")
@click.option("--namespace", default=None,
              help="Namespace of the Task objects; default: KUBETASKS_NAMESPACE, else the "
                   "kubeconfig context's, else default.")
@click.option("--env", "env_vars", multiple=True, metavar="NAME=VALUE",
              help="Environment variable for the tasks' pods (repeatable).")
@click.option("--service-account", default=None,
              help="ServiceAccount the tasks' pods run as.")
@click.option("--dry-run", is_flag=True, help="Print the objects as YAML; apply nothing.")
@click.argument("module")
@click.pass_context
def deploy(ctx: click.Context, image: str, namespace: str | None, env_vars: tuple[str, ...],
           service_account: str | None, dry_run: bool, module: str) -> None:
    """Create or update the Task and TaskQueue objects of every task in MODULE
    (an import path such as myapp.tasks)."""
    import os

    import yaml

    from kubetasks import deploy as deploying
    from kubetasks.errors import KubetasksError

    env: dict[str, str] = {}
    for item in env_vars:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--env")
        env[name] = value
    # Like `python -m`: modules in the current directory are importable.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        objects = deploying.manifests(module, image, env, service_account)
        if dry_run:
            click.echo(yaml.safe_dump_all(objects, sort_keys=False), nl=False)
            return
        from kubetasks.client import configure

        client = configure(namespace=namespace)
        for obj in deploying.apply(client, objects):
            kind, name = obj["kind"], obj["metadata"]["name"]
            detail = f" ({obj['spec']['entrypoint']})" if kind == "Task" else ""
            click.echo(f"{kind.lower()}/{name} applied in {client.namespace}{detail}")
    except (KubetasksError, ImportError) as exc:
        if ctx.obj["debug"]:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
