"""The state layer shared by hub and scheduler: the store (state/store.py: records, tables, repository
functions), cluster state (state/cluster.py: nodes, assignments), the log index (state/logs.py) and the schema's
migrations (state/migrations/). It imports only core."""
