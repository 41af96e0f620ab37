"""``kubetasks dev``: the local cluster, the operator and workers for your tasks in one command.

Dev mode sits above the SDK: it starts :mod:`kubetasks.devcluster` and the operator, and
deploys the tasks it finds. Nothing in the SDK imports it.
"""
