"""`SpaceConfig`: the README front matter of a Space, typed (reference §1). Parsing is in
builder/frontmatter.py; this is only the shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.stages import Sdk

COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")
CUSTOM_HEADER_VALUES: dict[str, tuple[str, ...]] = {
    "cross-origin-embedder-policy": ("unsafe-none", "require-corp", "credentialless"),
    "cross-origin-opener-policy": ("same-origin", "same-origin-allow-popups", "unsafe-none"),
    "cross-origin-resource-policy": ("same-site", "same-origin", "cross-origin"),
}


@dataclass(frozen=True)
class SpaceConfig:
    title: str | None = None
    emoji: str | None = None
    colorFrom: str | None = None
    colorTo: str | None = None
    sdk: Sdk | None = None
    python_version: str | None = None
    sdk_version: str | None = None
    suggested_hardware: str | None = None
    suggested_storage: str | None = None
    app_file: str | None = None
    app_build_command: str | None = None
    app_port: int | None = None
    base_path: str | None = None
    fullWidth: bool | None = None
    header: str | None = None
    short_description: str | None = None
    models: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    thumbnail: str | None = None
    pinned: bool | None = None
    hf_oauth: bool | None = None
    hf_oauth_scopes: tuple[str, ...] = ()
    hf_oauth_expiration_minutes: int | None = None
    hf_oauth_authorized_org: tuple[str, ...] = ()
    disable_embedding: bool = False
    startup_duration_timeout: str | None = None
    custom_headers: tuple[tuple[str, str], ...] = ()
    preload_from_hub: tuple[str, ...] = ()
    license: str | None = None
    duplicated_from: str | None = None
    extra: tuple[tuple[str, Any], ...] = field(default=())  # unknown keys, kept as given

    @property
    def startup_timeout_s(self) -> float:
        """`startup_duration_timeout` in seconds (default 30 min, as on Hugging Face)."""
        from core.durations import parse_duration

        return parse_duration(self.startup_duration_timeout) if self.startup_duration_timeout else 1800.0
