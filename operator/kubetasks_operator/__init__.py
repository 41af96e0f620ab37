"""The kubetasks operator: reconciles TaskRuns and TaskBatches into Jobs.

Layers, lowest first (higher layers import lower ones, never the reverse):
``core`` (pure decisions: state and time in, actions out), adapters for Kubernetes, Redis
and S3, and thin Kopf handlers that translate events.
"""
