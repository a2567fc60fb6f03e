"""A build plan: everything a backend needs to build one commit of a Space, decided before any I/O."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from core.config import SpaceConfig
from core.stages import Sdk


@dataclass(frozen=True)
class BuildPlan:
    space_id: str
    sha: str
    source_dir: str  # checked-out tree of the commit
    config: SpaceConfig
    sdk: Sdk
    app_file: str
    port: int
    python_version: str
    sdk_version: str | None
    pre_requirements: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()  # packages.txt (apt), docker backend only
    decisions: tuple[str, ...] = ()  # why this SDK / these versions, one line each, for the build log
    # Content behind the requirement lines (builder/envkey.py): local trees by their bytes; `private_to`
    # ("<space>@<sha>") when some line's content can change under the same text, so the env is never shared.
    local_trees: tuple[tuple[str, str], ...] = ()  # (path in the checkout, tree digest)
    private_to: str = ""
    tenant_code: bool = False  # the install runs code the Space chose (not only the default index's)

    @property
    def env_key(self) -> str:
        """Hash of every input of the Python environment, content included: equal keys share one environment.
        Plans of index requirements only keep the key they had before content was keyed."""
        inputs: dict[str, object] = {
            "python": self.python_version,
            "sdk": self.sdk.value,
            "sdk_version": self.sdk_version,
            "pre": list(self.pre_requirements),
            "req": list(self.requirements),
        }
        if self.local_trees:
            inputs["local"] = [list(t) for t in self.local_trees]
        if self.private_to:
            inputs["private_to"] = self.private_to
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]

    @property
    def owner(self) -> str:
        """The account the Space belongs to (names are unique case-insensitively)."""
        return self.space_id.split("/", 1)[0].lower()

    @property
    def owner_env_key(self) -> str:
        """The key of this plan's environment when it is built with its owner's own uv cache
        (builder/build_sandbox.py): such an environment is shared by that owner's Spaces only."""
        return hashlib.sha256(f"{self.env_key}\0owner:{self.owner}".encode()).hexdigest()[:20]
