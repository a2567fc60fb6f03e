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

The uv cache. Builds share one cache (uid 1000, used by builds only, never mounted into a Space) so that
the second environment with gradio in it does not download gradio again. A build can write into the cache
it runs with, so code run by a build could plant a file that a later build installs (cache poisoning).
Hence (1) `UV_LINK_MODE=copy`: an env never shares an inode with the cache, so nothing written to the cache
later reaches an env already built; (2) a build that runs code the Space chose (local trees, VCS, URLs,
other indexes: `BuildPlan.tenant_code`) gets a cache of that Space's own (`cache_for`), so only code from
the default index ever runs with the shared cache writable. What remains: a malicious package *on the
index* can poison the shared cache for later builds — the same trust a plain `pip install` of it gives.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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


def cache_for(tenant_code: bool, space_id: str) -> str:
    """The cache a build uses, relative to the build-cache root: the shared one, or the Space's own."""
    if not tenant_code:
        return "shared"
    return "spaces/" + hashlib.sha256(space_id.encode()).hexdigest()[:20]
