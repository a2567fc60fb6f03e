"""Cluster mode on one machine: start PostgreSQL and Redis locally (services.py) and every spacehost role
(up.py, what `make cluster` runs). The test fixtures in tests/cluster use the same code."""
