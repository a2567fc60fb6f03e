"""Space identifiers: `owner/name`, and the DNS label a Space is served under."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import BadRequest

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


@dataclass(frozen=True, order=True)
class SpaceId:
    owner: str
    name: str

    @classmethod
    def parse(cls, text: str) -> SpaceId:
        """`owner/name` → SpaceId; raises BadRequest naming what is wrong."""
        owner, sep, name = text.strip("/").partition("/")
        if not sep:
            raise BadRequest(f"repo id {text!r} must look like 'owner/name'")
        return cls.of(owner, name)

    @classmethod
    def of(cls, owner: str, name: str) -> SpaceId:
        for part, what in ((owner, "owner"), (name, "name")):
            if not _NAME.match(part) or ".." in part or part.endswith((".git", ".")):
                raise BadRequest(f"invalid {what} {part!r}: letters, digits, '-', '_', '.' (max 96)")
        return cls(owner, name)

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def subdomain(self) -> str:
        """The DNS label of the app, as on Hugging Face: lower case, `/`, `_` and `.` become `-`."""
        return re.sub(r"[/_.]", "-", f"{self.owner}/{self.name}".lower())


def account_key(name: str) -> str:
    """What makes account names (users and orgs) collide: `Alice` and `alice` are one name, as their Spaces'
    subdomains would be."""
    return name.lower()
