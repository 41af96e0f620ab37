"""The ``kubetasks`` command line.

This module is the main group and its registration; the commands that trigger and manage
runs live in ``runs.py``, those of batches and queues in ``inspect.py``, those of schedules
in ``schedules.py`` (formatting in ``output.py``), and are imported only when used, so
that ``kubetasks worker``, which starts once per attempt, does not pay for them.

Errors print one line on stderr (``error: ...``) and exit 1; usage errors exit 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from pathlib import Path
from typing import Any

import click

# Commands defined in other modules, imported when they are used (or listed by --help).
LAZY_COMMANDS = {
    "trigger": "kubetasks.cli.runs:trigger",
    "runs": "kubetasks.cli.runs:runs_group",
    "batches": "kubetasks.cli.inspect:batches_group",
    "queues": "kubetasks.cli.inspect:queues_group",
    "schedules": "kubetasks.cli.schedules:schedules_group",
}


def describe_error(exc: BaseException) -> str:
    """One line saying what went wrong, for errors that are not a bug of kubetasks."""
    import urllib3

    from kubetasks.cli.output import one_line

    if isinstance(exc, urllib3.exceptions.HTTPError):
        reason = getattr(exc, "reason", None) or exc
        return one_line(f"cannot reach the Kubernetes API: {reason}; check that the cluster "
                        "is running and that KUBECONFIG (or --kubeconfig) points at it")
    return one_line(str(exc)) or type(exc).__name__


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's or the environment's, not a bug: one line, no traceback."""
    import urllib3

    from kubetasks.cli.output import CliValueError
    from kubetasks.errors import KubetasksError

    expected: tuple[type[BaseException], ...] = (
        KubetasksError, CliValueError, urllib3.exceptions.HTTPError, OSError)
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # the plain install has no boto3 (kubetasks[s3] adds it)
        return expected
    return (*expected, BotoCoreError, ClientError)


OPERATOR_MODULES = ("kopf", "kubernetes", "redis", "prometheus_client", "aiohttp", "boto3")
LOCAL_MODULES = (*OPERATOR_MODULES, "cryptography", "moto")


def require_extra(extra: str, modules: tuple[str, ...], what: str) -> None:
    """Fail with the pip command to run when ``what`` needs packages the plain install of
    kubetasks leaves out."""
    import importlib.util

    from kubetasks.errors import MissingDependencyError

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(
            f"{what} needs {', '.join(missing)}, which the plain install leaves out: "
            f"pip install 'kubetasks[{extra}]'")


class MainGroup(click.Group):
    """The main group: lazily imported commands, and one-line errors."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in LAZY_COMMANDS:
            module, _, attribute = LAZY_COMMANDS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            if ctx.params.get("debug"):
                raise
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            # The reader went away (`kubetasks runs logs x | head`): stop quietly.
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(141)
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            if isinstance(exc, _expected_errors()):
                click.echo(f"error: {describe_error(exc)}", err=True)
            else:
                click.echo(f"error: {type(exc).__name__}: {describe_error(exc)} (a bug? "
                           "--debug shows the traceback)", err=True)
            ctx.exit(1)


@click.group(cls=MainGroup)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("-n", "--namespace", default=None, metavar="NAMESPACE",
              help="Namespace for every command; default: KUBETASKS_NAMESPACE, else the "
                   "kubeconfig context's, else default.")
@click.option("--kubeconfig", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Kubeconfig file; default: KUBECONFIG, in-cluster, else ~/.kube/config.")
@click.pass_context
def main(ctx: click.Context, debug: bool, namespace: str | None,
         kubeconfig: Path | None) -> None:
    """kubetasks: Kubernetes-native background tasks for Python."""
    ctx.obj = {"debug": debug, "namespace": namespace, "kubeconfig": kubeconfig}


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

    require_extra("operator", OPERATOR_MODULES, "the operator")

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
    require_extra("local", LOCAL_MODULES, "kubetasks dev (the local cluster)")
    from kubetasks.dev import mode as devmode
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
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 127.0.0.1 keeps it to this machine.")
@click.option("--port", default=8484, show_default=True, type=int)
@click.option("--namespace", "namespaces", multiple=True, metavar="NAMESPACE",
              help="Namespace to show (repeat for more); default: the global --namespace, "
                   "else the kubeconfig's.")
@click.option("--per-user", is_flag=True,
              help="In a cluster, behind an authenticating proxy: act with the rights of "
                   "each person's bearer token (TokenReview, SubjectAccessReview), not the "
                   "dashboard's own account.")
@click.pass_context
def dashboard(ctx: click.Context, host: str, port: int, namespaces: tuple[str, ...],
              per_user: bool) -> None:
    """Runs, queues, batches, tasks and schedules in a browser, live, with actions."""
    require_extra("dashboard", ("starlette", "uvicorn", "jinja2"), "kubetasks dashboard")
    from kubetasks._internal.client import KubeApi
    from kubetasks.dashboard.serve import serve

    shown = list(namespaces) or [ctx.obj["namespace"] or KubeApi.from_environment(
        kubeconfig=ctx.obj["kubeconfig"]).namespace or "default"]
    serve(shown, host=host, port=port, kubeconfig=ctx.obj["kubeconfig"], per_user=per_user)


@main.command()
def worker() -> None:
    """Run one attempt of a task (the entrypoint of an attempt's pod)."""
    from kubetasks.worker.runtime import main as worker_main

    worker_main()


@main.command()
@click.option("--image", required=True, help="Container image that holds the tasks' code.")
@click.option("-n", "--namespace", default=None,
              help="Namespace of the Task objects; default: the main -n, else "
                   "KUBETASKS_NAMESPACE, else the kubeconfig context's, else default.")
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
    (an import path such as myapp.tasks), and the TaskSchedule of every task declared with
    @task(cron=...); delete the declarative schedules MODULE no longer declares."""
    import os

    import yaml

    from kubetasks.cli import deployment as deploying
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
        from kubetasks._internal.client import configure

        client = configure(namespace=namespace or ctx.obj.get("namespace"),
                           kubeconfig=ctx.obj.get("kubeconfig"))
        deployed = deploying.deploy(client, module, objects)
        for obj in deployed.applied:
            kind, name = obj["kind"], obj["metadata"]["name"]
            click.echo(f"{kind.lower()}/{name} applied in {client.namespace}"
                       f"{deploying.applied_detail(obj)}")
        for obj in deployed.deleted:
            click.echo(f"taskschedule/{obj['metadata']['name']} deleted in {client.namespace} "
                       f"(no longer declared in {module})")
    except (KubetasksError, ImportError) as exc:
        if ctx.obj["debug"]:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
