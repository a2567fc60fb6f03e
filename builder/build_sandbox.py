"""The build sandbox, decided without I/O: the bubblewrap argv and the environment of one `uv` run.

A build installs a Space's requirements, which runs code the Space chose (an sdist's setup.py, a `./pkg`,
a `git+…` requirement), so it is confined like the Space itself (sandbox/bwrap.py). What it sees:
- `/usr`, `/etc` read-only, a fresh `/proc`, a minimal `/dev`, a private `/tmp` (also its HOME);
- the interpreter the env is made from, read-only (its prefix, when it lies outside `/usr`);
- the Space's checkout read-only at `/home/user/app` (the working directory, where the app will find it
  too, so `-e ./pkg` points at the same path in the app's sandbox), with a writable *copy* of each local
  requirement tree over it (setuptools writes `build/` and `*.egg-info` beside setup.py);
- its own env directory writable, at the env's *final* absolute path (a venv embeds it);
- its uv cache writable at `/cache/uv`, the uv binary at `/opt/spacehost/uv`, the build CA (if outside
  `/etc`) at `/opt/spacehost/build-ca.pem`.
Not the data dir, other environments, the store, secrets or spacehost's own environment. It runs as
uid/gid 1000 without capabilities (`no_new_privs`).

The uv cache. A build can write into the cache it runs with, and whatever it writes there (a rewritten
file of an unpacked wheel) is what later builds with that cache install: cache poisoning. So a cache is
only shared by builds that cannot poison it, and an environment only by those who share its cache
(`attempts`, in order):
- `shared`: one cache for every owner (uid 1000, builds only, never mounted into a Space), so the second
  environment with gradio in it does not download gradio again. Only builds that run *no* code at all use
  it: index requirements installed with `--no-build` (wheels are unpacked, never run; no sdist's setup.py,
  no build backend). Such an environment keeps the content key (`BuildPlan.env_key`) and is shared by all.
- `owner`: one cache per account (`owners/<hash>`), for every build that runs code: local trees, VCS, URLs,
  other indexes (`BuildPlan.tenant_code`), or an index requirement that needs building from source (the
  `shared` attempt stops with "Building source distributions is disabled" and this one follows). Its code can
  poison that owner's cache only, and its environment is keyed to the owner (`BuildPlan.owner_env_key`), so
  a poisoned cache reaches no other owner's Space, whichever requirement lines they share.
`UV_LINK_MODE=copy`: an env never shares an inode with the cache, so nothing written to a cache later
reaches an env already built; a finished env is root's (builder/uv_backend.py) and never mounted into
another build.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from builder.plan import BuildPlan
from sandbox.bwrap import base_argv, parent_dirs, unprivileged_tail

APP_MOUNT = "/home/user/app"
CACHE_MOUNT = "/cache/uv"
UV_MOUNT = "/opt/spacehost/uv"
CA_MOUNT = "/opt/spacehost/build-ca.pem"
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
# Passed through from spacehost's environment, nothing else: how to reach the package indexes.
PROXY_KEYS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy",
              "all_proxy")
UV_INDEX_KEY = re.compile(r"^UV_(INDEX|DEFAULT_INDEX|INDEX_URL|EXTRA_INDEX_URL|FIND_LINKS|INDEX_STRATEGY|"
                          r"HTTP_TIMEOUT|CONCURRENT_DOWNLOADS|PRERELEASE)$")


@dataclass(frozen=True)
class BuildMounts:
    source_dir: str  # the checkout (read-only at APP_MOUNT)
    env_work: str  # host dir owned by uid 1000, bound writable at env_path
    env_path: str  # the env's final absolute path
    cache_dir: str  # host dir owned by uid 1000, bound writable at CACHE_MOUNT
    uv: str  # the uv binary on the host
    ca_file: str | None = None  # the build CA bundle on the host
    interpreter_roots: tuple[str, ...] = ()  # interpreter prefixes outside /usr, read-only at their own path
    tree_copies: tuple[tuple[str, str], ...] = ()  # (host copy owned by uid 1000, path in the checkout)


def ca_in_sandbox(ca_file: str | None) -> str | None:
    """Where the sandbox finds the CA bundle: its own path under /etc (bound anyway), else CA_MOUNT."""
    if ca_file is None:
        return None
    return ca_file if ca_file.startswith("/etc/") else CA_MOUNT


def build_argv(m: BuildMounts, command: Sequence[str]) -> list[str]:
    """bubblewrap argv running `command` (uv at UV_MOUNT) as uid 1000 in the build sandbox described above."""
    argv = [*base_argv(), "--die-with-parent", "--perms", "0755", "--dir", "/home", "--perms", "0755", "--dir", "/home/user",
            "--ro-bind", m.source_dir, APP_MOUNT]
    for copy, rel in m.tree_copies:
        argv += ["--bind", copy, os.path.normpath(os.path.join(APP_MOUNT, rel))]
    binds = [m.env_path, CACHE_MOUNT, UV_MOUNT, *m.interpreter_roots]
    ca = ca_in_sandbox(m.ca_file)
    if m.ca_file and ca == CA_MOUNT:
        binds.append(CA_MOUNT)
    argv += parent_dirs(binds, made=("/", "/tmp", "/home", "/home/user", APP_MOUNT))
    argv += ["--bind", m.env_work, m.env_path, "--bind", m.cache_dir, CACHE_MOUNT, "--ro-bind", m.uv, UV_MOUNT]
    for root in m.interpreter_roots:
        argv += ["--ro-bind", root, root]
    if m.ca_file and ca == CA_MOUNT:
        argv += ["--ro-bind", m.ca_file, CA_MOUNT]
    argv += ["--chdir", APP_MOUNT, "--"]
    return argv + unprivileged_tail(command)


def build_env(host_env: Mapping[str, str], ca: str | None, cache: str = CACHE_MOUNT) -> dict[str, str]:
    """The whole environment of a build: PATH, HOME, uv's settings and cache, the CA bundle (`ca`: its path
    as the build sees it), the proxy and uv index variables of `host_env`; nothing else of spacehost's (no
    SPACEHOST_* secrets, no tokens)."""
    env = {k: v for k, v in host_env.items() if k in PROXY_KEYS or UV_INDEX_KEY.match(k)}
    env.update(PATH=SANDBOX_PATH, HOME="/tmp", UV_CACHE_DIR=cache, UV_LINK_MODE="copy", UV_NO_PROGRESS="1",
               NO_COLOR="1", UV_PYTHON_DOWNLOADS="never", UV_SYSTEM_CERTS="1", PYTHONDONTWRITEBYTECODE="1")
    if ca:
        env.update(SSL_CERT_FILE=ca, PIP_CERT=ca, REQUESTS_CA_BUNDLE=ca)
    return env


@dataclass(frozen=True)
class Attempt:
    """One way to build a plan's environment: with which uv cache (relative to the build-cache root), into
    which env key, and whether building from source (running code) is allowed."""

    cache: str
    env_key: str
    no_build: bool
    why: str  # for the build log


def owner_cache(owner: str) -> str:
    return "owners/" + hashlib.sha256(owner.encode()).hexdigest()[:20]


def attempts(plan: BuildPlan) -> tuple[Attempt, ...]:
    """The builds to try for `plan`, in order: each but the last gives way to the next when it would have to
    run code (see the module docstring). Pure."""
    own = Attempt(owner_cache(plan.owner), plan.owner_env_key, False,
                  f"this install runs code, so it uses {plan.owner}'s own uv cache and its environment serves "
                  f"{plan.owner}'s Spaces only")
    if plan.tenant_code:
        return (own,)
    return (Attempt("shared", plan.env_key, True, "wheels from the index only (no code runs): the shared uv cache"),
            own)


NEEDS_BUILD = re.compile(r"building (source distributions|from source) is disabled", re.IGNORECASE)


def needs_build(tail: Sequence[str]) -> bool:
    """Whether a `--no-build` uv run failed for want of building something from source."""
    return any(NEEDS_BUILD.search(line) for line in tail)
