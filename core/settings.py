"""Settings of a spacehost installation: every `spacehost up` flag, also readable from `SPACEHOST_<FLAG>`."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path


def absolute(path: Path) -> Path:
    """`path` with `~` expanded, made absolute without resolving symlinks (an operator's link stays a link)."""
    return Path(os.path.abspath(path.expanduser()))


def _env_int(name: str, default: int) -> int:
    """`SPACEHOST_<NAME>` as an integer, or `default`."""
    return int(os.environ.get("SPACEHOST_" + name.upper(), default))


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".spacehost")
    host: str = "127.0.0.1"
    port: int = 8080
    domain: str = "localhost"
    spaces_domain: str = ""  # Spaces at owner-name.SPACES_DOMAIN, a site apart from the hub's; "" = domain
    runtime: str = "process"  # "process" | "docker"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls: str | None = None  # "self-signed"
    zerogpu_devices: int = 0
    zerogpu_quota_anonymous_s: int = 120  # daily GPU seconds per anonymous visitor (client IP), as on HF
    zerogpu_quota_signed_in_s: int = 300  # per signed-in user without a setting of its own (API: zerogpu/quotas)
    direct_port_base: int = 0  # 0: port + 1000
    build_ca: Path | None = None  # CA bundle trusted by builds (TLS-intercepting proxies)
    docker_base_image: str = "spacehost/base:bookworm"
    # The bridge network of the Spaces (runtime docker), made by spacehost; "": one per install (spaces_network)
    docker_network: str = ""
    # Cluster, docker: the registry (host:port) builds push their images to and docker nodes pull them from
    registry: str = field(default_factory=lambda: os.environ.get("SPACEHOST_REGISTRY", ""))
    insecure_no_sandbox: bool = False  # run Spaces even without a working sandbox (said loudly everywhere)
    keep_spaces: bool = False  # leave Spaces running when spacehost stops (a restart re-adopts them)
    access_log: str = "-"  # the proxy's access log: "-" standard error, "off", or a file path
    # Warm starts (process runtime): "per-env", one zygote shared by every Space on an env, each child entering its
    # own Space's sandbox (scheduler/runtimes/shared_zygote.py); "per-space", a zygote in each Space's sandbox
    zygote: str = "per-env"
    # The frozen tier (scheduler.lifecycle.idle_tier): a Space idle for `freeze_after_s` is frozen (0: never); a
    # frozen one falls to sleep (killed) while MemAvailable is below `min_available_mb`, the longest idle first
    freeze_after_s: int = field(default_factory=lambda: _env_int("freeze_after", 30))
    min_available_mb: int = field(default_factory=lambda: _env_int("min_available_mb", 1024))
    # Request size limits of the hub (413 beyond them); environment: SPACEHOST_MAX_JSON_BYTES, …
    max_json_bytes: int = field(default_factory=lambda: _env_int("max_json_bytes", 1 << 20))  # a JSON body
    max_body_bytes: int = field(default_factory=lambda: _env_int("max_body_bytes", 1 << 30))  # a commit body
    max_file_bytes: int = field(default_factory=lambda: _env_int("max_file_bytes", 256 << 20))  # one file in it
    # Git LFS: objects above `max_lfs_bytes` are refused. preupload sends files above `lfs_threshold_bytes` to LFS
    # (HF: 10 MB), the rest inline; the default keeps every file up to max_file_bytes inline, since huggingface_hub
    # with hf_xet installed wants Xet, not LFS, for "lfs" files (HF_HUB_DISABLE_XET=1 makes it use LFS).
    max_lfs_bytes: int = field(default_factory=lambda: _env_int("max_lfs_bytes", 5 << 30))
    lfs_threshold_bytes: int = field(default_factory=lambda: _env_int("lfs_threshold_bytes", 256 << 20))
    # Size limit of each persistent volume (bucket), enforced by a loop-mounted ext4 (scheduler/volume_fs.py;
    # root only): HF's old storage tiers were 20 GB / 150 GB / 1 TB; SPACEHOST_VOLUME_LIMIT_BYTES, 0: no limit
    volume_limit_bytes: int = field(default_factory=lambda: _env_int("volume_limit_bytes", 20 * 10**9))
    # A Space's storage tier (POST /api/spaces/{id}/storage) sizes its volumes instead, capped by the limit above
    # (raise it to give medium and large their size): SPACEHOST_STORAGE_{SMALL,MEDIUM,LARGE}_BYTES, HF's sizes
    storage_small_bytes: int = field(default_factory=lambda: _env_int("storage_small_bytes", 20 * 10**9))
    storage_medium_bytes: int = field(default_factory=lambda: _env_int("storage_medium_bytes", 150 * 10**9))
    storage_large_bytes: int = field(default_factory=lambda: _env_int("storage_large_bytes", 10**12))

    def __post_init__(self) -> None:
        """Paths are made absolute once, here, against the working directory at start: nothing downstream
        (builds run in other directories, sandboxes bind host paths) may depend on the working directory."""
        for name in ("data_dir", "tls_cert", "tls_key", "build_ca"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, absolute(Path(value)))
        if self.access_log not in ("-", "off"):
            object.__setattr__(self, "access_log", str(absolute(Path(self.access_log))))

    @property
    def scheme(self) -> str:
        return "https" if (self.tls_cert or self.tls) else "http"

    @property
    def hub_url(self) -> str:
        return f"{self.scheme}://{self.domain}:{self.port}"

    @property
    def space_domain(self) -> str:
        """The domain whose subdomains are the Spaces (`spaces_domain`, else the hub's own)."""
        return self.spaces_domain or self.domain

    @property
    def install_tag(self) -> str:
        """A short name of this installation (a hash of its data dir): what it names its bridges, docker network
        and firewall chains after, so that two installs on one machine never share them."""
        return hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:8]

    @property
    def spaces_network(self) -> str:
        """The docker network of the Spaces: `docker_network`, else `spacehost-<install_tag>`."""
        return self.docker_network or f"spacehost-{self.install_tag}"

    @property
    def storage_tier_bytes(self) -> dict[str, int]:
        """The size of each storage tier (state.volumes.TIERS)."""
        return {"small": self.storage_small_bytes, "medium": self.storage_medium_bytes,
                "large": self.storage_large_bytes}

    def path(self, *parts: str) -> Path:
        return self.data_dir.joinpath(*parts)

    def cert_dir(self, domain: str) -> Path:
        """A custom domain's certificate and key (certbot/lego layout: fullchain.pem, privkey.pem)."""
        return self.path("certs", domain)

    def secret_key(self) -> bytes:
        """The installation's key (signing, secret encryption): SPACEHOST_SECRET_KEY or data_dir/secret.key."""
        env = os.environ.get("SPACEHOST_SECRET_KEY")
        if env:
            return env.encode()
        path = self.path("secret.key")
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
        return path.read_text().strip().encode()
