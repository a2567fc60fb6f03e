"""Shared vocabulary of spacehost: identifiers, stages, hardware, config, events, errors. No I/O."""
