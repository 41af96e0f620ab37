"""A node agent for the local cluster: it registers a Node and runs the pods bound to it as
plain local processes (there are no images and no containers here).

Run it as ``python -m kubetasks.devcluster.nodeagent --kubeconfig PATH --node-name NAME
--workdir DIR``, or from Python through :class:`NodeAgentProcess`.

What a pod's program gets (the contract tasks and workers rely on):

- argv is the container's ``command`` + ``args``, with ``$(VAR)`` expanded as Kubernetes
  does. A container without ``command`` fails the pod with reason ``NoCommand``: there is
  no image to take an entrypoint from.
- Environment: the container's ``env`` (``value``, ``valueFrom.fieldRef``,
  ``secretKeyRef``, ``configMapKeyRef``) and ``envFrom``, on top of the agent's ``PATH``
  and ``HOME``, plus ``KUBETASKS_TERMINATION_MESSAGE_PATH`` and ``KUBETASKS_POD_UID``.
- Termination message: write it to the file named by ``$KUBETASKS_TERMINATION_MESSAGE_PATH``
  (``terminationMessagePath``, usually ``/dev/termination-log``, cannot exist outside a
  container). At most 4096 bytes are kept. With ``FallbackToLogsOnError`` an empty file on
  failure means the last 80 lines of the log.
- stdout and stderr are appended to ``<workdir>/pods/<namespace>/<pod>/<container>.log``.
- The working directory is ``workingDir`` (created if missing), else
  ``<workdir>/pods/<namespace>/<pod>/work``.
- Containers run one after the other (init containers first). A process is never
  restarted: ``restartPolicy: OnFailure`` behaves like ``Never`` (the Job controller then
  makes a new pod instead of the kubelet restarting the container).
- Every process is the leader of its own process group; stopping a pod signals the group.
  Processes die with the agent (``PR_SET_PDEATHSIG`` = SIGKILL), as containers die with a
  failed node; a restarted agent marks pods it finds running Failed with reason
  ``NodeAgentRestarted``.

``<workdir>/records.jsonl`` tells what really ran: one JSON line per process start (written
before the status patch that announces it) and end (written as soon as it exits), see
:class:`ProcessRecord`. End records of processes that died with a previous agent are
written by the next agent when it starts, with that time and reason ``NodeAgentRestarted``.
"""

# The modules, by concern:
#   agent.py          the agent: wires the rest together, decides what each pod event means
#   pods.py           one pod: its containers one after the other, and what the pod becomes
#   environment.py    a container's environment, argv ($(VAR) expansion) and working dir
#   processes.py      starting, signalling and timing pod processes (process groups, PDEATHSIG)
#   status.py         pod status as a kubelet reports it, and writing it to the API server
#   node.py           the Node and its Lease: registration and heartbeats
#   podwatch.py       list and watch the pods bound to this node
#   recovery.py       what a restarted agent does about the processes of the previous one
#   records.py        records.jsonl
#   client.py         the Kubernetes API as raw JSON over HTTP
#   agent_process.py  NodeAgentProcess: the agent as a child process (tests, `kubetasks dev`)
#   __main__.py       the command line

from __future__ import annotations

from kubetasks.devcluster.nodeagent.agent import NodeAgent
from kubetasks.devcluster.nodeagent.agent_process import NodeAgentProcess
from kubetasks.devcluster.nodeagent.client import ApiError, KubeClient
from kubetasks.devcluster.nodeagent.environment import (
    POD_UID_ENV,
    TERMINATION_MESSAGE_ENV,
    ContainerConfigError,
    expand_references,
    field_value,
)
from kubetasks.devcluster.nodeagent.node import NodeResources
from kubetasks.devcluster.nodeagent.processes import exit_code
from kubetasks.devcluster.nodeagent.records import ProcessRecord, read_records
from kubetasks.devcluster.nodeagent.recovery import REASON_RESTARTED

__all__ = [
    "POD_UID_ENV",
    "REASON_RESTARTED",
    "TERMINATION_MESSAGE_ENV",
    "ApiError",
    "ContainerConfigError",
    "KubeClient",
    "NodeAgent",
    "NodeAgentProcess",
    "NodeResources",
    "ProcessRecord",
    "exit_code",
    "expand_references",
    "field_value",
    "read_records",
]
