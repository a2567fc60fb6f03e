"""Every table of the schema, for the migrations (state/migrations/env.py) and their tests: `metadata()` imports
each module of the state package first, so a new module with tables is covered without being listed here, and
tests/unit/test_migrations.py fails until a revision creates its tables."""

from __future__ import annotations

import importlib
import pkgutil

from sqlalchemy import MetaData

import state
from state.store import Base


def metadata() -> MetaData:
    for module in pkgutil.iter_modules(state.__path__):
        if not module.ispkg:
            importlib.import_module(f"state.{module.name}")
    return Base.metadata
