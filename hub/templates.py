"""Starter Spaces (`hf spaces templates`, `hf repos create --template`): folders of files a new Space begins
with. spacehost ships a few (sdk_templates/starters/<name>/); an operator adds more by dropping folders into
DATA_DIR/templates/<name>/ (one of the same name replaces the shipped one). A folder's README.md front matter
names its SDK; `private: true` there marks it as best kept private (HF's `preferredPrivate`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from builder.frontmatter import parse_readme
from core.errors import BadRequest, SpacehostError

SHIPPED = Path(__file__).resolve().parents[1] / "sdk_templates" / "starters"
NAMESPACE = "templates"  # template repo ids are "templates/<name>"


@dataclass(frozen=True)
class Template:
    name: str
    sdk: str
    preferred_private: bool
    folder: Path

    @property
    def repo_id(self) -> str:
        return f"{NAMESPACE}/{self.name}"

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "repoId": self.repo_id, "sdk": self.sdk, "preferredPrivate": self.preferred_private}

    def files(self) -> list[tuple[str, Path]]:
        """(path in repo, file on disk) of every file of the template, sorted; dotfiles included."""
        return sorted((p.relative_to(self.folder).as_posix(), p) for p in self.folder.rglob("*") if p.is_file())


def read_template(folder: Path) -> Template | None:
    """The template in `folder`, None where its README.md is missing, broken or names no SDK."""
    try:
        cfg = parse_readme((folder / "README.md").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SpacehostError):
        return None
    if cfg.sdk is None:
        return None
    private = dict(cfg.extra).get("private") is True
    return Template(folder.name, cfg.sdk.value, private, folder)


def load_templates(roots: Iterable[Path]) -> list[Template]:
    """Templates of every root, a later root's folder replacing an earlier one of the same name; by name."""
    found: dict[str, Template] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            t = read_template(folder) if folder.is_dir() else None
            if t is not None:
                found[t.name] = t
    return sorted(found.values(), key=lambda t: t.name)


def pick_template(templates: list[Template], wanted: str) -> Template:
    """The template `wanted` names (its repo id, or its name in any case); BadRequest listing the others."""
    for t in templates:
        if wanted in (t.repo_id, t.name) or wanted.lower() == t.name.lower():
            return t
    names = ", ".join(t.repo_id for t in templates)
    raise BadRequest(f"Unknown Space template {wanted!r}: one of {names}")
