"""A real local Kubernetes for tests and ``kubetasks dev``: control plane, node agent,
Redis and an S3 server, all as local processes on 127.0.0.1."""

from kubetasks.devcluster.binaries import Binaries, find_binaries
from kubetasks.devcluster.controlplane import ControllerSettings, ControlPlane
from kubetasks.devcluster.errors import ComponentError

__all__ = ["Binaries", "ComponentError", "ControlPlane", "ControllerSettings", "find_binaries"]
