"""What the proxy needs from the rest of spacehost; the composition root implements it."""

from __future__ import annotations

from typing import Protocol


class ProxyHooks(Protocol):
    def activity(self, space_id: str) -> None:
        """A visitor request reached the Space (not a health probe); at most about once a second per Space,
        and every `activity_interval` while a WebSocket to it stays open."""
        ...

    async def wake(self, space_id: str) -> None:
        """A SLEEPING Space got a request: start it; a FROZEN one: thaw it. Called once per Space until it
        returns."""
        ...

    def user_for_token(self, token: str) -> str | None:
        """The user a hub token belongs to, None if invalid. Results are cached by the proxy for a few
        seconds."""
        ...

    def credential_live(self, cred: str) -> bool:
        """Whether the hub credential named in a Space's URL token or cookie (`proxy/auth.py`: a token id, a
        browser session) still exists: False once revoked, signed out or expired. Cached by the proxy for a
        couple of seconds."""
        ...

    def can_view(self, space_id: str, user: str | None) -> bool:
        """Whether `user` may see private Space `space_id`."""
        ...

    def writer_of(self, token: str, space_id: str) -> bool:
        """Whether hub token `token` may change Space `space_id` (a write token of its owner, of a write
        member of its org, or of an admin): the reload server's gate. Cached by the proxy for a few seconds."""
        ...
