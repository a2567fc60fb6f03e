"""Which SDK a Space uses and which file is its app: a pure function over the config and the repo's files.

Detection is an ordered table of rules; the first rule that matches decides, and its `reason` goes to the
build log. After that the app file must exist, or `NoAppFile` says what is missing.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from core.config import SpaceConfig
from core.errors import SpacehostError
from core.stages import Sdk
from sdk_templates import TEMPLATES

Files = Mapping[str, bytes | None]  # repo-relative path → content (None: present, content not read)

PYTHON_APP_FILES = ("app.py", "streamlit_app.py", "main.py", "Home.py")
PYTHON_SDKS = {"gradio": Sdk.GRADIO, "streamlit": Sdk.STREAMLIT}
_IMPORT = re.compile(r"^\s*(?:import|from)\s+(gradio|streamlit)\b", re.MULTILINE)


class NoAppFile(SpacehostError, LookupError):
    """The repository has no app to run (stage NO_APP_FILE)."""

    http_status = 400


@dataclass(frozen=True)
class Detection:
    sdk: Sdk
    app_file: str
    reason: str


Rule = Callable[[SpaceConfig, Files], Detection | None]


def imported_sdk(source: bytes) -> Sdk | None:
    """The SDK a Python file imports first (gradio or streamlit), parsed with `ast`; regex on syntax errors."""
    text = source.decode("utf-8", errors="replace")
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        m = _IMPORT.search(text)
        return PYTHON_SDKS[m.group(1)] if m else None
    found: list[tuple[int, int, Sdk]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        else:
            continue
        for name in names:
            sdk = PYTHON_SDKS.get(name.partition(".")[0])
            if sdk is not None:
                found.append((node.lineno, node.col_offset, sdk))
    return min(found)[2] if found else None


def default_app_file(sdk: Sdk, files: Files) -> str:
    """The app file of `sdk` when README.md names none: the template's, or a common alternative present."""
    default = TEMPLATES[sdk].default_app_file
    if sdk is Sdk.STREAMLIT and default not in files:
        return next((f for f in PYTHON_APP_FILES if f in files), default)
    return default


# ---- the rules, in order --------------------------------------------------------------------------------

def _readme_sdk(config: SpaceConfig, files: Files) -> Detection | None:
    if config.sdk is None:
        return None
    app = config.app_file or default_app_file(config.sdk, files)
    return Detection(config.sdk, app, f"README.md sets sdk: {config.sdk.value}")


def _dockerfile(config: SpaceConfig, files: Files) -> Detection | None:
    if "Dockerfile" not in files:
        return None
    return Detection(Sdk.DOCKER, "Dockerfile", "no sdk in README.md; the repository has a Dockerfile")


def _python_import(config: SpaceConfig, files: Files) -> Detection | None:
    candidates = (config.app_file,) if config.app_file else PYTHON_APP_FILES
    for name in candidates:
        content = files.get(name)
        sdk = imported_sdk(content) if name.endswith(".py") and content is not None else None
        if sdk is not None:
            return Detection(sdk, name, f"no sdk in README.md; {name} imports {sdk.value}")
    return None


def _index_html(config: SpaceConfig, files: Files) -> Detection | None:
    name = config.app_file if config.app_file and config.app_file.endswith(".html") else "index.html"
    if name not in files:
        return None
    return Detection(Sdk.STATIC, name, f"no sdk in README.md; the repository has {name}")


def _python_fallback(config: SpaceConfig, files: Files) -> Detection | None:
    candidates = (config.app_file,) if config.app_file else PYTHON_APP_FILES
    name = next((n for n in candidates if n.endswith(".py") and n in files), None)
    if name is None:
        return None
    return Detection(Sdk.GRADIO, name, f"no sdk in README.md; {name} imports neither gradio nor streamlit "
                                       "directly, assuming gradio (set sdk: in README.md to choose)")


RULES: tuple[tuple[str, Rule], ...] = (
    ("readme", _readme_sdk),
    ("dockerfile", _dockerfile),
    ("python-import", _python_import),
    ("index-html", _index_html),
    ("python-fallback", _python_fallback),
)


def detect_sdk(config: SpaceConfig, files: Files) -> Detection:
    """The SDK and app file of a Space. Raises NoAppFile when nothing matches or the app file is missing."""
    detection = next((d for _, rule in RULES if (d := rule(config, files)) is not None), None)
    if detection is None:
        raise NoAppFile("no app file found: add app.py (Gradio or Streamlit), index.html (static) or a "
                        "Dockerfile at the root of the repository, or set sdk: and app_file: in README.md")
    if detection.app_file not in files:
        raise NoAppFile(_missing(config, detection))
    return detection


def _missing(config: SpaceConfig, d: Detection) -> str:
    if config.app_file:
        return f"{d.app_file} not found; README.md sets app_file: {config.app_file} ({d.reason})"
    what = {Sdk.DOCKER: "a Dockerfile", Sdk.STATIC: "index.html"}.get(d.sdk, f"{d.app_file}")
    return (f"{d.app_file} not found; a {d.sdk.value} Space needs {what} at the root of the repository, "
            f"or set app_file: in README.md ({d.reason})")
