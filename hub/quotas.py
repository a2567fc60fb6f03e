"""ZeroGPU daily quotas per user or organization, set by an admin and kept in `DATA_DIR/zerogpu/quotas.json`.

The broker knows visitors only by key (`user:NAME`, `ip:ADDR`), so the hub resolves names to keys: a user's
quota is its own setting, else the largest of its organizations' settings, else the tier default. Resolved
again whenever a setting or a membership changes and at startup.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hub.accounts import Accounts


class QuotaSettings:
    def __init__(self, path: Path, accounts: Accounts) -> None:
        self.path, self.accounts = path, accounts

    def load(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def set(self, name: str, daily_s: int | None) -> dict[str, int]:
        settings = self.load()
        if daily_s is None:
            settings.pop(name, None)
        else:
            settings[name] = daily_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(settings, indent=1, sort_keys=True))
        os.replace(tmp, self.path)
        return settings

    def resolved(self) -> dict[str, int]:
        """Visitor key → daily seconds for every user with a setting of its own or through an org."""
        settings = self.load()
        out: dict[str, int] = {}
        for name, seconds in settings.items():
            acct = self.accounts.get(name)
            if acct is None:
                continue
            if acct.kind == "org":
                for member, _role in self.accounts.members(name):
                    key = f"user:{member.name}"
                    if member.name not in settings:
                        out[key] = max(out.get(key, 0), seconds)
            else:
                out[f"user:{name}"] = seconds
        return out
