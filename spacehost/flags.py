"""The flags of `spacehost up` (and of `server`, which takes them all) and the one way they become `Settings`.

One source per value: a flag given on the command line wins, else `SPACEHOST_<FLAG>` from the environment, else
the default that `Settings` declares (never a second copy of it here). Fields that `Settings` reads from the
environment itself (`freeze_after_s`, `min_available_mb`) have no default here: an absent flag leaves them to it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from core.settings import Settings

FALSE = ("0", "false", "no", "off", "")


def env(flag: str, default: str | None = None) -> str | None:
    """`SPACEHOST_<FLAG>` (`--data-dir` → SPACEHOST_DATA_DIR), or `default`."""
    return os.environ.get("SPACEHOST_" + flag.upper().replace("-", "_"), default)


def env_int(flag: str, default: int) -> int:
    return int(env(flag) or default)


def env_flag(flag: str) -> bool:
    """A boolean flag's default from `SPACEHOST_<FLAG>`: set and not 0/false/no/off/empty."""
    return (env(flag) or "0").strip().lower() not in FALSE


def up_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = Settings
    p = sub.add_parser("up", help="run spacehost (embedded mode: everything on this machine)")
    p.add_argument("--data-dir", default=env("data-dir", str(s.data_dir)))
    p.add_argument("--host", default=env("host", s.host))
    p.add_argument("--port", type=int, default=env_int("port", s.port))
    p.add_argument("--domain", default=env("domain", s.domain))
    p.add_argument("--spaces-domain", default=env("spaces-domain", s.spaces_domain),
                   help="serve Spaces at OWNER-NAME.D, a site apart from the hub's (as *.hf.space is apart from "
                        "huggingface.co); default: subdomains of --domain")
    p.add_argument("--runtime", choices=["process", "docker"], default=env("runtime", s.runtime))
    p.add_argument("--tls-cert", default=env("tls-cert"))
    p.add_argument("--tls-key", default=env("tls-key"))
    p.add_argument("--tls", choices=["self-signed"], default=env("tls"))
    p.add_argument("--zerogpu-devices", type=int, default=env_int("zerogpu-devices", s.zerogpu_devices),
                   help="declare N GPUs for hosts where NVML sees none (default: the devices NVML finds)")
    p.add_argument("--zerogpu-quota-anonymous", type=int,
                   default=env_int("zerogpu-quota-anonymous", s.zerogpu_quota_anonymous_s),
                   help=f"daily ZeroGPU seconds of an anonymous visitor (default {s.zerogpu_quota_anonymous_s})")
    p.add_argument("--zerogpu-quota-signed-in", type=int,
                   default=env_int("zerogpu-quota-signed-in", s.zerogpu_quota_signed_in_s),
                   help=f"daily ZeroGPU seconds of a signed-in user (default {s.zerogpu_quota_signed_in_s}; per "
                        "user/org: the quotas API)")
    p.add_argument("--build-ca", default=env("build-ca"), help="CA bundle trusted by builds (default: SSL_CERT_FILE)")
    p.add_argument("--docker-base-image", default=env("docker-base-image", s.docker_base_image),
                   help="image that Space images build FROM (deploy/make-base-image.sh makes it)")
    p.add_argument("--docker-network", default=env("docker-network", s.docker_network),
                   help="bridge network of the Spaces with --runtime docker (made and firewalled by spacehost)")
    p.add_argument("--direct-port-base", type=int, default=env_int("direct-port-base", s.direct_port_base),
                   help="first per-Space port (default: --port + 1000)")
    p.add_argument("--access-log", default=env("access-log", s.access_log),
                   help="the proxy's access log: - (standard error, the default), off, or a file path")
    p.add_argument("--zygote", choices=["per-space", "per-env"], default=env("zygote", s.zygote),
                   help="process runtime's warm starts: one warm interpreter per environment shared by every "
                        "Space on it, each Space's child entering its own sandbox (per-env, the default), or one "
                        "per Space inside its sandbox (per-space)")
    p.add_argument("--insecure-no-sandbox", action="store_true", default=env_flag("insecure-no-sandbox"),
                   help="run Spaces even where no sandbox works (as plain processes of the spacehost user: any "
                        "Space can read the data dir and every secret); without it such a host runs no Space")
    p.add_argument("--freeze-after", type=int, default=None,
                   help="freeze a Space idle this many seconds (its CPU goes to zero, a request thaws it in "
                        "milliseconds; 0: never); it is killed after its sleep time as before (default 30)")
    p.add_argument("--min-available-mb", type=int, default=None,
                   help="while MemAvailable is below this, frozen Spaces fall asleep (killed), the longest "
                        "idle first (default 1024)")
    p.add_argument("--keep-spaces", action="store_true", default=env_flag("keep-spaces"),
                   help="leave the Spaces running when spacehost stops, for a restart to re-adopt them "
                        "(default: stop them, SIGTERM then SIGKILL after a grace)")


def settings_from(args: argparse.Namespace) -> Settings:
    """The `Settings` that parsed `up` (or `server`) flags say."""
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("spacehost: --tls-cert and --tls-key go together")
    build_ca = args.build_ca or os.environ.get("SSL_CERT_FILE")
    left_to_settings: dict[str, Any] = {
        name: value for name, value in (("freeze_after_s", args.freeze_after),
                                        ("min_available_mb", args.min_available_mb)) if value is not None}
    return Settings(
        data_dir=Path(args.data_dir), host=args.host, port=args.port, domain=args.domain, runtime=args.runtime,
        spaces_domain=args.spaces_domain,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None, tls_key=Path(args.tls_key) if args.tls_key else None,
        tls=args.tls, zerogpu_devices=args.zerogpu_devices, zerogpu_quota_anonymous_s=args.zerogpu_quota_anonymous,
        zerogpu_quota_signed_in_s=args.zerogpu_quota_signed_in, build_ca=Path(build_ca) if build_ca else None,
        direct_port_base=args.direct_port_base, docker_base_image=args.docker_base_image,
        docker_network=args.docker_network, access_log=args.access_log, zygote=args.zygote,
        insecure_no_sandbox=args.insecure_no_sandbox, keep_spaces=args.keep_spaces, **left_to_settings,
    )
