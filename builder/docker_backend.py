"""The `docker` build backend: one image per commit, `spacehost/<owner>--<name>:<sha12>`; with a registry
(`settings.registry`, cluster mode) also pushed there, and the artifact names it by digest (builder/registry.py).

Builds run the Debian `docker` CLI (`/usr/bin/docker build`, BuildKit) as a subprocess, because the docker
SDK's build call has no BuildKit secrets. Its output is streamed line by line into the build log with secret
values masked. Secrets are build secrets (`RUN --mount=type=secret,id=NAME`, files 0600 that live only for
the build), never build args; variables are build args. Image listing and GC use the docker SDK.

Build steps run on Docker's default bridge (`--network=default`), never the host's network: before each build
spacehost (re)installs that bridge's firewall (sandbox/dockernet.py): the package indexes and the public
internet are reachable, the host's ports (hub, broker, loopback services) and private ranges are not. Without
those rules no build runs (fails closed).

Static Spaces need no image: the proxy serves their files from the checkout (`Artifact.static_root`).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors

from builder import registry
from builder.backend import BuildContext
from builder.dockerfile import CA_SECRET, DockerRecipe, image_tag, recipe
from builder.plan import BuildPlan
from builder.uv_backend import failure_message
from core.artifact import Artifact
from core.errors import BuildFailed
from core.settings import Settings
from core.stages import Sdk
from sandbox import firewall as fwall
from sandbox.dockernet import DEFAULT_NETWORK, bridge_of, build_firewall, forward_chain

DOCKER_CLI = "/usr/bin/docker"  # Debian's 20.10 client: BuildKit secrets without a `# syntax=` pull
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
LABEL_SPACE = "spacehost.space"
LABEL_SHA = "spacehost.sha"
TAIL_LINES = 60
_NOISE = re.compile(r"^#\d+ sha256:[0-9a-f]{64}$")  # BuildKit's per-step digest lines
_SECRET_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_STEP = re.compile(r"^#(\d+) (\[.*|CACHED)$")  # a step's title, or its cache hit
_OUTPUT = re.compile(r"^#\d+ \d+\.\d+ (.*)$")  # what a step's command printed
_ERROR = re.compile(r"^#\d+ ERROR: (.*)$")
DEPS_STEP = "uv pip install -r /tmp/spacehost/requirements.txt"


@dataclass(frozen=True)
class ImageRef:
    sha: str
    tag: str
    created: float  # epoch seconds


def masker(values: Iterable[str]) -> Callable[[str], str]:
    """A function that replaces every secret value (3+ chars, longest first) in a line with `***`. Logs go
    line by line, so a value spanning lines (a PEM key) is masked line by line."""
    vals = sorted({p for v in values if v for p in v.splitlines() if len(p) >= 3}, key=len, reverse=True)

    def mask(line: str) -> str:
        for v in vals:
            line = line.replace(v, "***")
        return line

    return mask


class DockerBackend:
    name = "docker"

    def __init__(self, settings: Settings, docker_cli: str = DOCKER_CLI) -> None:
        self.settings = settings
        self.docker_cli = docker_cli if Path(docker_cli).exists() else (shutil.which("docker") or docker_cli)
        self._client: Any = None

    # -- build ---------------------------------------------------------------------------------------------

    def build(self, plan: BuildPlan, ctx: BuildContext) -> Artifact:
        art = Artifact(plan.space_id, plan.sha, plan.sdk, plan.source_dir, plan.app_file, plan.port, plan.config,
                       env_key=plan.env_key)
        if plan.sdk is Sdk.STATIC:
            root = str(Path(plan.source_dir, plan.app_file).parent)
            ctx.log(f"--> Static Space: served from {plan.app_file} by the proxy, no image")
            return dataclasses.replace(art, static_root=root)
        rec = recipe(plan, self.settings.docker_base_image, ctx.variables)
        tag = image_tag(plan.space_id, plan.sha)
        work = self.settings.path("docker-build")
        work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=work, prefix="build-") as tmp:
            context, dockerfile = _context(rec, plan, Path(tmp))
            self._firewall_build_network(ctx)
            argv = [self.docker_cli, "build", "--progress=plain", "--network=default", "-t", tag,
                    "-f", str(dockerfile), "--label", f"{LABEL_SPACE}={plan.space_id}", "--label", f"{LABEL_SHA}={plan.sha}"]
            if ctx.no_cache:
                argv.append("--no-cache")
            for k, v in rec.build_args:
                argv += ["--build-arg", f"{k}={v}"]
            argv += _secret_args(Path(tmp, "secrets"), ctx.secrets, self._build_ca(), ctx.log)
            argv.append(str(context))
            ctx.log(f"--> docker build -t {tag}" + (" --no-cache" if ctx.no_cache else ""))
            self._run(argv, ctx, masker(ctx.secrets.values()))
        if self.settings.registry:  # cluster: docker nodes pull it by digest (builder/registry.py)
            return dataclasses.replace(art, image=registry.push(self.client, tag, self.settings.registry,
                                                                plan.space_id, plan.sha[:12], ctx.log))
        return dataclasses.replace(art, image=tag)

    def _firewall_build_network(self, ctx: BuildContext) -> None:
        """Install the egress rules of the default bridge, where BuildKit runs the steps; BuildFailed if not."""
        try:
            bridge = bridge_of(self.client.networks.get(DEFAULT_NETWORK).attrs)
            fwall.apply(build_firewall(bridge, fwall.host_resolvers(), forward_chain()))
        except (docker.errors.DockerException, fwall.FirewallError) as e:
            raise BuildFailed(f"the builds' network could not be firewalled, so no build runs: {e}") from None
        ctx.log(f"--> network: Docker's default bridge ({bridge.interface}): package indexes reachable, "
                "no port of the host, no private range")

    def _build_ca(self) -> str | None:
        """The CA bundle builds trust: `build_ca` (must exist), else $SSL_CERT_FILE, else the system's."""
        if self.settings.build_ca is not None:
            if not self.settings.build_ca.is_file():
                raise BuildFailed(f"the build CA bundle {self.settings.build_ca} (build_ca) is not a file")
            return str(self.settings.build_ca)
        ca = os.environ.get("SSL_CERT_FILE") or SYSTEM_CA
        return ca if Path(ca).is_file() else None

    def _run(self, argv: list[str], ctx: BuildContext, mask: Callable[[str], str]) -> None:
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, text=True, errors="replace", bufsize=1, start_new_session=True)
        why: list[str] = []
        done = threading.Event()

        def watchdog() -> None:
            deadline = time.monotonic() + ctx.timeout_s
            while not done.wait(0.2):
                if ctx.cancel.is_set() or time.monotonic() > deadline:
                    why.append("cancelled" if ctx.cancel.is_set() else f"timed out after {ctx.timeout_s:.0f}s")
                    _kill(proc)
                    return

        threading.Thread(target=watchdog, name="docker-build-watchdog", daemon=True).start()
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        steps = _Steps()
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = mask(raw.rstrip("\n"))
                if _NOISE.match(line):
                    continue
                tail.append(line)
                ctx.log(line)
                if note := steps.note(line):
                    ctx.log(note)
            code = proc.wait()
        finally:
            done.set()
            if proc.poll() is None:
                _kill(proc)
        if why or code != 0:
            reason = f"docker build {why[0]}" if why else failure_summary(list(tail), code)
            ctx.log(f"--> {reason}")
            raise BuildFailed(reason, "\n".join(tail))

    # -- images ----------------------------------------------------------------------------------------------

    def images_for(self, space_id: str) -> list[ImageRef]:
        """The images kept for `space_id`, newest first."""
        refs = []
        for img in self.client.images.list(filters={"label": f"{LABEL_SPACE}={space_id}"}):
            labels = img.labels or {}
            if labels.get(LABEL_SPACE) != space_id:
                continue
            sha = labels.get(LABEL_SHA, "")
            for tag in img.tags or ():
                if tag == image_tag(space_id, sha):
                    refs.append(ImageRef(sha, tag, _epoch(img.attrs.get("Created", ""))))
        return sorted(refs, key=lambda r: r.created, reverse=True)

    def gc_images(self, space_id: str, keep: int = 3, protect: Collection[str] = ()) -> list[str]:
        """Remove the Space's images beyond the newest `keep`, except `protect`ed tags and images a container
        still uses, and its untagged leftovers. Returns the tags removed."""
        removed = [ref.tag for ref in self.images_for(space_id)[keep:]
                   if ref.tag not in protect and self._remove_image(ref.tag)]
        # Images whose tag a rebuild of the same commit (factory) took over.
        for img in self.client.images.list(filters={"dangling": True, "label": f"{LABEL_SPACE}={space_id}"}):
            self._remove_image(img.id)
        return removed

    def _remove_image(self, ref: str) -> bool:
        try:
            self.client.images.remove(ref)
        except docker.errors.APIError:  # in use by a container: kept until that one is gone
            return False
        return True

    def remove_images(self, space_id: str) -> None:
        """Remove every image of the Space (Space deleted)."""
        self.gc_images(space_id, keep=0)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = docker.from_env()
        return self._client


class _Steps:
    """Watches BuildKit's plain output for the Python deps step coming from the layer cache."""

    def __init__(self) -> None:
        self.deps: set[str] = set()

    def note(self, line: str) -> str | None:
        m = _STEP.match(line)
        if m and DEPS_STEP in m.group(2):
            self.deps.add(m.group(1))
        elif m and m.group(2) == "CACHED" and m.group(1) in self.deps:
            return "--> Python environment reused from the layer cache (requirements unchanged)"
        return None


def failure_summary(tail: list[str], code: int | None) -> str:
    """The user-facing reason of a failed build: the installer's error, else BuildKit's, else the exit code."""
    output = [m.group(1) for line in tail if (m := _OUTPUT.match(line))]
    if any(line.lstrip().startswith(("error:", "×")) for line in output):
        return failure_message(output)
    error = next((m.group(1) for line in reversed(tail) if (m := _ERROR.match(line))), None)
    return f"docker build failed: {error}" if error else f"docker build failed (exit code {code})"


def _context(rec: DockerRecipe, plan: BuildPlan, tmp: Path) -> tuple[Path, Path]:
    """The build context directory and the Dockerfile path."""
    if not rec.templated:
        dockerfile = Path(plan.source_dir, "Dockerfile")
        if not dockerfile.is_file():
            raise BuildFailed("sdk: docker needs a Dockerfile at the root of the repository")
        return Path(plan.source_dir), dockerfile
    ctx = tmp / "context"
    shutil.copytree(plan.source_dir, ctx / "app", symlinks=True, ignore=shutil.ignore_patterns(".git", ".complete"),
                    copy_function=_link_or_copy)
    for rel, text in rec.files:
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        (ctx / rel).write_text(text)
    assert rec.dockerfile is not None
    (ctx / "Dockerfile").write_text(rec.dockerfile)
    return ctx, ctx / "Dockerfile"


def _secret_args(folder: Path, secrets: Mapping[str, str], ca: str | None, log: Callable[[str], None]) -> list[str]:
    folder.mkdir(mode=0o700)
    args = []
    for name, value in sorted(secrets.items()):
        if not _SECRET_ID.match(name) or name == CA_SECRET:
            log(f"--> secret {name!r} is not offered to the build (name not usable as a secret id)")
            continue
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value)
        args += ["--secret", f"id={name},src={path}"]
    if ca:
        args += ["--secret", f"id={CA_SECRET},src={ca}"]
    return args


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _kill(proc: subprocess.Popen[str]) -> None:
    """TERM the CLI's process group (the daemon cancels the build when its client goes), KILL after 5 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _epoch(created: str) -> float:
    try:  # Docker writes nanoseconds: keep the microseconds Python can parse
        return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", created)).timestamp()
    except ValueError:
        return 0.0

