"""Contract suites: one per Protocol, run over every implementation."""
