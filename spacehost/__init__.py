"""Composition root: the CLI and the wiring of the embedded and cluster modes."""
