"""The source of truth shared by hub and scheduler (cluster state for now; hub/store.py moves here later)."""
