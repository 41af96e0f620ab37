"""kubetasks: Kubernetes-native background tasks for Python."""

__version__ = "0.1.0"
