"""A checked-out commit → `BuildPlan`: front matter, SDK detection, dependency files, versions and port, with
every decision written down as one human-readable line (`plan.decisions`, shown in the build log).

Files are read only inside the checkout: a symlink that leads out of it counts as absent, so a pushed
`README.md -> /etc/...` cannot make the builder read the host's files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from builder.detect import detect_sdk
from builder.envkey import content_inputs
from builder.frontmatter import parse_readme
from builder.plan import BuildPlan
from core.config import SpaceConfig
from core.errors import BuildFailed
from core.stages import Sdk
from sdk_templates import DEFAULT_PYTHON, DEFAULT_SDK_VERSIONS, TEMPLATES

MAX_READ = 4 << 20  # bytes read of any one file the planner looks at
# Preinstalled beside the SDK, as on Hugging Face (reference §1.1; `spaces` so ZeroGPU apps run unchanged).
# Not `datasets`: it pulls pyarrow (~40 MB) into every env; Spaces that use it list it.
SDK_EXTRAS = {Sdk.GRADIO: ("huggingface_hub", "requests", "spaces")}
_INCLUDE = re.compile(r"^(?:-r|--requirement)(?:\s+|=)(\S+)$")
_CONSTRAINT = re.compile(r"^(?:-c|--constraint)(?:\s+|=)(\S+)$")
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


class RepoFiles(Mapping[str, bytes | None]):
    """The files of a checkout as a read-only mapping: membership is a stat, values are read on access."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, rel: str) -> Path | None:
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path

    def __contains__(self, rel: object) -> bool:
        return isinstance(rel, str) and self._path(rel) is not None

    def __getitem__(self, rel: str) -> bytes | None:
        path = self._path(rel)
        if path is None:
            raise KeyError(rel)
        with path.open("rb") as f:
            return f.read(MAX_READ)

    def __iter__(self) -> Iterator[str]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if d != ".git"]
            for name in filenames:
                yield Path(dirpath, name).relative_to(self.root).as_posix()

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def text(self, rel: str) -> str | None:
        data = self.get(rel)
        return None if data is None else data.decode("utf-8", errors="replace")


def requirement_lines(files: RepoFiles, rel: str, _seen: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The lines of a pip requirements file: comments, blank lines and continuations folded; `-r` includes
    inlined when they stay inside the repository. Raises BuildFailed for an include outside it or missing."""
    text = files.text(rel)
    if text is None:
        return ()
    out: list[str] = []
    for number, line in _logical_lines(text):
        include = _INCLUDE.match(line)
        if include is None:
            if _CONSTRAINT.match(line):
                raise BuildFailed(f"{rel} line {number}: constraint files (-c) are not supported; "
                                  "pin the versions in the requirements instead")
            out.append(line)
            continue
        target = os.path.normpath(os.path.join(os.path.dirname(rel), include.group(1)))
        if target.startswith("..") or os.path.isabs(target) or target not in files:
            raise BuildFailed(f"{rel} line {number}: -r {include.group(1)} is not a file inside the repository")
        if target in _seen or target == rel:
            raise BuildFailed(f"{rel} line {number}: -r {include.group(1)} includes itself")
        out.extend(requirement_lines(files, target, (*_seen, rel)))
    return tuple(out)


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            start = start or number
            pending += line[:-1] + " "
            continue
        line = " ".join((pending + line).split())
        if line:
            yield (start or number), line
        pending, start = "", 0


def requirement_name(line: str) -> str | None:
    """The normalised distribution name a requirement line installs, when it names one."""
    m = _NAME.match(line)
    return re.sub(r"[-_.]+", "-", m.group(1)).lower() if m and not line.startswith("-") else None


def install_requirements(plan: BuildPlan) -> tuple[str, ...]:
    """What the environment of `plan` gets, in one resolve: the SDK at its version (unless requirements.txt
    names the SDK package itself), the SDK's companions, then the Space's requirements."""
    template = TEMPLATES[plan.sdk]
    if template.package is None:
        return plan.requirements
    named = {requirement_name(r) for r in plan.requirements}
    head: list[str] = []
    if template.package not in named:
        head.append(f"{template.package}=={plan.sdk_version}" if plan.sdk_version else template.package)
    head.extend(x for x in SDK_EXTRAS.get(plan.sdk, ()) if requirement_name(x) not in named)
    return (*head, *plan.requirements)


def plan_build(space_id: str, sha: str, source_dir: str) -> BuildPlan:
    """Plan the build of the commit checked out at `source_dir`. Raises ConfigError (README), NoAppFile
    (nothing to run) or BuildFailed (unusable dependency files)."""
    files = RepoFiles(Path(source_dir))
    config = parse_readme(files.text("README.md"))
    detection = detect_sdk(config, files)
    sdk = detection.sdk
    decisions = [f"sdk: {sdk.value} ({detection.reason})", f"app file: {detection.app_file}"]
    python_version = _choice(decisions, "python", config.python_version, DEFAULT_PYTHON, "python_version")
    sdk_version = None
    if sdk in DEFAULT_SDK_VERSIONS:
        sdk_version = _choice(decisions, f"{sdk.value} version", config.sdk_version,
                              DEFAULT_SDK_VERSIONS[sdk], "sdk_version")
    port = _port(config, sdk, decisions)
    pre: tuple[str, ...] = ()
    reqs: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    if sdk in (Sdk.GRADIO, Sdk.STREAMLIT):
        pre = requirement_lines(files, "pre-requirements.txt")
        reqs = requirement_lines(files, "requirements.txt")
        if pre:
            decisions.append(f"pre-requirements: {len(pre)} from pre-requirements.txt, installed first")
        decisions.append(f"requirements: {len(reqs)} from requirements.txt" if reqs
                         else "requirements: none (no requirements.txt)")
        package = TEMPLATES[sdk].package
        if package in {requirement_name(r) for r in reqs}:
            decisions.append(f"{package}: the version in requirements.txt wins over sdk_version")
    content = content_inputs((*pre, *reqs), files.root)
    for path, digest in content.local:
        decisions.append(f"local requirement {path}: keyed by its bytes ({digest[:12]})")
    private_to = f"{space_id}@{sha}" if content.private else ""
    if private_to:
        decisions.append("requirements that can change under the same line (VCS branch or tag, URL without "
                         "a hash): this environment is built for this commit of this Space only")
    packages = tuple(_logical_line_values(files.text("packages.txt")))
    if packages:
        used = "installed with apt" if sdk is Sdk.DOCKER else "ignored by the process backend (no apt)"
        decisions.append(f"packages.txt: {len(packages)} Debian packages, {used}")
    return BuildPlan(space_id=space_id, sha=sha, source_dir=source_dir, config=config, sdk=sdk,
                     app_file=detection.app_file, port=port, python_version=python_version,
                     sdk_version=sdk_version, pre_requirements=pre, requirements=reqs, packages=packages,
                     decisions=tuple(decisions), local_trees=content.local, private_to=private_to,
                     tenant_code=content.tenant_code)


def _choice(decisions: list[str], what: str, configured: str | None, default: str, key: str) -> str:
    if configured:
        decisions.append(f"{what}: {configured} (README.md sets {key}: {configured})")
        return configured
    decisions.append(f"{what}: {default} (default; set {key}: in README.md to change)")
    return default


def _port(config: SpaceConfig, sdk: Sdk, decisions: list[str]) -> int:
    default = TEMPLATES[sdk].default_port
    if sdk is Sdk.STATIC:
        decisions.append("port: none (static files are served by spacehost)")
        return default
    if sdk is Sdk.DOCKER and config.app_port:
        decisions.append(f"port: {config.app_port} (README.md sets app_port: {config.app_port})")
        return config.app_port
    ignored = f"; app_port: {config.app_port} applies to docker Spaces only" if config.app_port else ""
    decisions.append(f"port: {default} ({sdk.value} default{ignored})")
    return default


def _logical_line_values(text: str | None) -> Iterator[str]:
    for _, line in _logical_lines(text or ""):
        yield from line.split()
