"""The kubetasks custom resources, as pydantic models (``kubetasks.api.v1alpha1``).

The models are the single source of the API: the SDK builds objects with them, the operator
parses them, and ``python -m kubetasks.api.crdgen`` generates the CRDs in ``crds/`` from them.
"""

from kubetasks.api.v1alpha1 import (
    API_VERSION,
    GROUP,
    VERSION,
    Task,
    TaskBatch,
    TaskQueue,
    TaskRun,
    TaskSchedule,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "Task",
    "TaskBatch",
    "TaskQueue",
    "TaskRun",
    "TaskSchedule",
]
