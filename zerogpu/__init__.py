"""spacehost."""
