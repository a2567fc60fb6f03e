"""Moved to state/store.py (the state layer shared by hub and scheduler). This re-export keeps `from hub.store
import ...` working while callers move; new code imports from `state.store`."""

from state.store import (
    Account,
    AccountRecord,
    Base,
    BrowserSession,
    Membership,
    Password,
    Space,
    SpaceDomain,
    SpaceKV,
    SpaceRecord,
    Store,
    Token,
    TokenRecord,
    open_engine,
    utcnow,
)

__all__ = ["Account", "AccountRecord", "Base", "BrowserSession", "Membership", "Password", "Space", "SpaceDomain",
           "SpaceKV", "SpaceRecord", "Store", "Token", "TokenRecord", "open_engine", "utcnow"]
