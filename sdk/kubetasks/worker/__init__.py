"""What runs inside an attempt's pod: ``kubetasks worker`` (or ``python -m kubetasks.worker``)
loads the task named by the pod's environment, runs it once, stores its output and writes the
termination message the operator reads. The contract with the operator is in
:mod:`kubetasks.protocol.pod`; the implementation is :mod:`kubetasks.worker.runtime`.
"""
