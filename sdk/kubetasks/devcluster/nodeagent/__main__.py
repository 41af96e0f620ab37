"""``python -m kubetasks.devcluster.nodeagent --kubeconfig PATH --node-name NAME --workdir
DIR``: run a node agent until SIGTERM (or SIGINT)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from kubetasks.devcluster.nodeagent.agent import NodeAgent
from kubetasks.devcluster.nodeagent.client import ApiError, KubeClient
from kubetasks.devcluster.nodeagent.node import NodeResources

log = logging.getLogger("kubetasks.nodeagent")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kubetasks.devcluster.nodeagent",
        description="Register a Node and run the pods bound to it as local processes.",
    )
    parser.add_argument("--kubeconfig", type=Path, required=True,
                        help="credentials of system:node:<name> (group system:nodes)")
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--workdir", type=Path, required=True,
                        help="pod logs, working directories and records.jsonl go here")
    parser.add_argument("--cpu", default="8")
    parser.add_argument("--memory", default="16Gi")
    parser.add_argument("--max-pods", type=int, default=500)
    parser.add_argument("--max-grace-seconds", type=float, default=30.0,
                        help="cap on the SIGTERM-to-SIGKILL grace period of a stopping pod")
    parser.add_argument("--heartbeat-seconds", type=float, default=10.0)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    args.workdir.mkdir(parents=True, exist_ok=True)
    agent = NodeAgent(
        KubeClient(args.kubeconfig, args.workdir / "credentials"),
        args.node_name,
        args.workdir,
        resources=NodeResources(cpu=args.cpu, memory=args.memory, pods=args.max_pods),
        heartbeat_seconds=min(args.heartbeat_seconds, 10.0),
        max_grace_seconds=args.max_grace_seconds,
    )

    def request_stop(signum: int, _frame: object) -> None:
        agent.stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        agent.run()
    except ApiError as exc:
        log.error("cannot register the node: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
