"""Placement, lifecycle and runtimes of Spaces."""
