"""Alembic migrations of the state schema (state/store.py and state/cluster.py). `state.schema.upgrade` runs
them when a Store opens; see state/schema.py for how to add one."""
