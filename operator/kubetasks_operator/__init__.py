"""The kubetasks operator: reconciles TaskRuns and TaskBatches into Jobs.

Layers, lowest first (higher layers import lower ones, never the reverse): ``core`` (pure
decisions: state and time in, actions out), ``observe``/``world`` (JSON to core values, the
watch-fed cache), adapters for Kubernetes and Redis (S3 through
:mod:`kubetasks.protocol.storage`), the ``scheduler`` loop, and thin Kopf handlers that
translate events. docs/ARCHITECTURE.md draws them; pyproject.toml's import-linter contracts
enforce the core's purity.
"""
