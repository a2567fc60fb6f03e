"""BuildPlan → what `docker build` needs: the Dockerfile text, the generated context files and the build
args. Pure: no I/O beyond reading the SDK's template file and sdk_templates/warm_main.py, no clock.

Context layout of a templated (Gradio, Streamlit) build, made by builder/docker_backend.py:

    Dockerfile
    spacehost/packages.txt           apt packages (packages.txt), only when there are any
    spacehost/pre-requirements.txt   installed first (pre-requirements.txt)
    spacehost/requirements.txt       the SDK at `sdk_version` and its companions + requirements.txt
    spacehost/warm_main.py           the warm launcher of spare containers (/opt/spacehost/warm_main.py)
    app/                             the commit's tree

The deps layers are keyed by their inputs only (the requirement files are copied before the app), so a
code-only push rebuilds only the last COPY. The build CA arrives as the build secret `spacehost_ca`, mounted
over the system bundle for the RUNs that download — never stored in a layer.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import sdk_templates
from builder.plan import BuildPlan
from builder.planner import install_requirements
from core.errors import BuildFailed
from core.stages import Sdk
from sdk_templates import TEMPLATES

UV_VERSION = "0.13.9"
CA_SECRET = "spacehost_ca"
CA_MOUNT = f"--mount=type=secret,id={CA_SECRET},target=/etc/ssl/certs/ca-certificates.crt"
UV_CACHE_MOUNT = "--mount=type=cache,target=/root/.cache/uv,id=spacehost-uv,sharing=locked"
VENV = "/opt/venv"
CONTEXT_DIR = "spacehost"  # generated files, beside app/
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
WARM_MAIN = Path(sdk_templates.__file__).with_name("warm_main.py")  # baked in: spare containers run it
WARM_IN_IMAGE = "/opt/spacehost/warm_main.py"
LABEL_WARM = "spacehost.warm"


@dataclass(frozen=True)
class DockerRecipe:
    """How to build one plan. `dockerfile` is None for `sdk: docker`: the author's Dockerfile, as is."""

    dockerfile: str | None
    files: tuple[tuple[str, str], ...]  # (path relative to the context, text)
    build_args: tuple[tuple[str, str], ...]
    templated: bool  # context = generated files + app/ copy; otherwise the source dir itself


def recipe(plan: BuildPlan, base_image: str, variables: Mapping[str, str] = {}) -> DockerRecipe:
    """The recipe of `plan`. Variables become build args (as on Hugging Face; undeclared ones are ignored)."""
    args = tuple(sorted(variables.items()))
    if plan.sdk is Sdk.DOCKER:
        return DockerRecipe(None, (), args, templated=False)
    if plan.sdk not in (Sdk.GRADIO, Sdk.STREAMLIT):
        raise BuildFailed(f"the docker backend builds no image for sdk {plan.sdk.value!r}")
    files = [
        (f"{CONTEXT_DIR}/pre-requirements.txt", _lines(plan.pre_requirements)),
        (f"{CONTEXT_DIR}/requirements.txt", _lines(install_requirements(plan))),
    ]
    if plan.packages:
        files.append((f"{CONTEXT_DIR}/packages.txt", _lines(plan.packages)))
    files.append((f"{CONTEXT_DIR}/{WARM_MAIN.name}", WARM_MAIN.read_text()))
    return DockerRecipe(render(plan, base_image), tuple(files), args, templated=True)


def warm_version() -> str:
    """Label value of images whose /opt/spacehost/warm_main.py is this spacehost's (spare containers use it)."""
    return hashlib.sha256(WARM_MAIN.read_bytes()).hexdigest()[:12]


def render(plan: BuildPlan, base_image: str) -> str:
    """The Dockerfile of a Gradio or Streamlit plan, from `sdk_templates/<sdk>/Dockerfile`."""
    tpl = TEMPLATES[plan.sdk]
    command = tpl.command("python", plan.app_file, plan.port)
    values = {
        "port": str(plan.port),
        "command": json.dumps(command),
        "python_base": _python_base(base_image, plan.packages, plan.python_version),
    }

    def fill(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise KeyError(f"{tpl.dockerfile()}: unknown placeholder {m.group(0)}")
        return values[m.group(1)]

    return _PLACEHOLDER.sub(fill, tpl.dockerfile().read_text())


def image_tag(space_id: str, sha: str) -> str:
    """`spacehost/<owner>--<name>:<sha12>`; ids that are not already valid lower-case image names get a
    short hash so that `Foo/bar` and `foo/bar` never share a tag (labels carry the exact id)."""
    owner, _, name = space_id.partition("/")
    repo = re.sub(r"[^a-z0-9._-]", "-", f"{owner}--{name}".lower()).strip("._-")
    if repo != f"{owner}--{name}" or not repo:
        repo = f"{repo}-{hashlib.sha256(space_id.encode()).hexdigest()[:6]}"
    return f"spacehost/{repo}:{sha[:12]}"


def _python_base(base_image: str, packages: tuple[str, ...], python_version: str) -> str:
    """The layers every Python SDK shares, slowest-changing first."""
    return "\n".join((
        f"FROM {base_image}",
        "ENV LANG=C.UTF-8 PYTHONUNBUFFERED=1 DEBIAN_FRONTEND=noninteractive SYSTEM=spaces \\",
        "    UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 \\",
        "    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
        "RUN useradd -m -u 1000 user",
        _system_packages(packages),
        _python_env(python_version),
        f"ENV HOME=/home/user VIRTUAL_ENV={VENV} PATH={VENV}/bin:/home/user/.local/bin:/usr/local/bin:/usr/bin:/bin",
        f"COPY {CONTEXT_DIR}/{WARM_MAIN.name} {WARM_IN_IMAGE}",
        f"LABEL {LABEL_WARM}={warm_version()}",
    ))


def _system_packages(packages: tuple[str, ...]) -> str:
    if not packages:
        return "# (no apt packages)"
    return (
        f"COPY {CONTEXT_DIR}/packages.txt /tmp/spacehost/packages.txt\n"
        f"RUN {CA_MOUNT} \\\n"
        "    apt-get update -q \\\n"
        "    && xargs -a /tmp/spacehost/packages.txt apt-get install -y -q --no-install-recommends \\\n"
        "    && rm -rf /var/lib/apt/lists/*"
    )


def _python_env(python_version: str) -> str:
    # The requested Python, else the base image's own (no interpreter downloads without a registry for them).
    return (
        f"RUN {CA_MOUNT} \\\n"
        "    python3 -m venv /opt/uv \\\n"
        f"    && /opt/uv/bin/pip install -q --no-cache-dir --cert /etc/ssl/certs/ca-certificates.crt uv=={UV_VERSION} \\\n"
        "    && ln -s /opt/uv/bin/uv /usr/local/bin/uv\n"
        f"COPY {CONTEXT_DIR}/pre-requirements.txt {CONTEXT_DIR}/requirements.txt /tmp/spacehost/\n"
        f"RUN {CA_MOUNT} {UV_CACHE_MOUNT} \\\n"
        f"    (uv venv -q --python {python_version} {VENV} 2>/dev/null \\\n"
        f"     || {{ echo \"--> Python {python_version} is not in the base image; using $(python3 --version)\"; \\\n"
        f"          uv venv -q --python python3 {VENV}; }}) \\\n"
        f"    && export VIRTUAL_ENV={VENV} \\\n"
        "    && if [ -s /tmp/spacehost/pre-requirements.txt ]; then uv pip install -r /tmp/spacehost/pre-requirements.txt; fi \\\n"
        "    && uv pip install -r /tmp/spacehost/requirements.txt"
    )


def _lines(items: tuple[str, ...]) -> str:
    return "".join(f"{i}\n" for i in items)

