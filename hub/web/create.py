"""Creating a Space from the browser: the README a new Space starts with (pure), and the commit of it and of
the chosen starter template's files (the effect)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from core.ids import SpaceId
from hub.control import Hub
from hub.repos import Author, PutFile, commit_ops

EMOJIS = "🚀🎨🧪🔭🦜🐙🌈🧠🎲🛰️"
PALETTE = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")


def starter_readme(sid: SpaceId, sdk: str, description: str, license: str, body: str = "") -> str:
    """README.md with HF front matter; emoji and colors picked from the name, so a Space keeps its look."""
    n = sum(sid.name.encode())
    front = {"title": sid.name, "emoji": EMOJIS[n % len(EMOJIS)], "colorFrom": PALETTE[n % 8],
             "colorTo": PALETTE[(n // 8 + 3) % 8], "sdk": sdk, "pinned": False}
    if description:
        front["short_description"] = description[:60]
    if license:
        front["license"] = license
    if sdk == "gradio":
        front["app_file"] = "app.py"
    text = yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
    return f"---\n{text}---\n\n{body or f'# {sid.name}'}\n"


def template_files(name: str) -> list[tuple[str, Path]]:
    """The files of starter template `name` (hub.templates, where present), README.md excluded."""
    if not name:
        return []
    try:
        from hub.templates import SHIPPED, load_templates
    except ImportError:
        return []
    found = [t for t in load_templates([SHIPPED]) if t.name == name]
    return [(p, f) for p, f in found[0].files() if p != "README.md"] if found else []


def first_commit(hub: Hub, sid: SpaceId, user: str, readme: str, template: str) -> str:
    """Commit README.md and the template's files to main; the new commit's sha."""
    with tempfile.TemporaryDirectory(prefix="spacehost-new-") as tmp:
        path = Path(tmp, "README.md")
        path.write_text(readme, encoding="utf-8")
        ops = [PutFile("README.md", path), *(PutFile(p, f) for p, f in template_files(template))]
        author = Author(user, f"{user}@users.noreply.{hub.settings.domain}")
        sha, _ = commit_ops(hub.repos, sid, "main", list(ops), "Initial commit\n", author, None)
    return sha
