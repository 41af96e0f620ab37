"""A small real kubetasks application: see tasks.py (the tasks) and main.py (what triggers
them). Run it end to end on the embedded local cluster with ``scripts/dev --once``."""
