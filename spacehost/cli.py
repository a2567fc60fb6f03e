"""`spacehost` command line. Every flag of `up` may also come from `SPACEHOST_<FLAG>`."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import SpacehostError
from core.settings import Settings
from spacehost.worker import run_worker, worker_parser

if TYPE_CHECKING:
    from hub.accounts import Accounts


def _env(flag: str, default: str | None = None) -> str | None:
    return os.environ.get("SPACEHOST_" + flag.upper().replace("-", "_"), default)


def _flag(flag: str) -> bool:
    """A boolean flag's default from `SPACEHOST_<FLAG>`: set and not 0/false/no/off/empty."""
    return (_env(flag) or "0").strip().lower() not in ("0", "false", "no", "off", "")


def up_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("up", help="run spacehost (embedded mode: everything on this machine)")
    p.add_argument("--data-dir", default=_env("data-dir", ".spacehost"))
    p.add_argument("--host", default=_env("host", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(_env("port", "8080") or 8080))
    p.add_argument("--domain", default=_env("domain", "localhost"))
    p.add_argument("--spaces-domain", default=_env("spaces-domain", ""),
                   help="serve Spaces at OWNER-NAME.D, a site apart from the hub's (as *.hf.space is apart from "
                        "huggingface.co); default: subdomains of --domain")
    p.add_argument("--runtime", choices=["process", "docker"], default=_env("runtime", "process"))
    p.add_argument("--tls-cert", default=_env("tls-cert"))
    p.add_argument("--tls-key", default=_env("tls-key"))
    p.add_argument("--tls", choices=["self-signed"], default=_env("tls"))
    p.add_argument("--zerogpu-devices", type=int, default=int(_env("zerogpu-devices", "0") or 0),
                   help="declare N GPUs for hosts where NVML sees none (default: the devices NVML finds)")
    p.add_argument("--zerogpu-quota-anonymous", type=int, default=int(_env("zerogpu-quota-anonymous", "120") or 120),
                   help="daily ZeroGPU seconds of an anonymous visitor (default 120)")
    p.add_argument("--zerogpu-quota-signed-in", type=int, default=int(_env("zerogpu-quota-signed-in", "300") or 300),
                   help="daily ZeroGPU seconds of a signed-in user (default 300; per user/org: the quotas API)")
    p.add_argument("--build-ca", default=_env("build-ca"), help="CA bundle trusted by builds (default: SSL_CERT_FILE)")
    p.add_argument("--docker-base-image", default=_env("docker-base-image", "spacehost/base:bookworm"),
                   help="image that Space images build FROM (deploy/make-base-image.sh makes it)")
    p.add_argument("--docker-network", default=_env("docker-network", "spacehost"),
                   help="bridge network of the Spaces with --runtime docker (made and firewalled by spacehost)")
    p.add_argument("--direct-port-base", type=int, default=int(_env("direct-port-base", "0") or 0),
                   help="first per-Space port (default: --port + 1000)")
    p.add_argument("--access-log", default=_env("access-log", "-"),
                   help="the proxy's access log: - (standard error, the default), off, or a file path")
    p.add_argument("--insecure-no-sandbox", action="store_true", default=_flag("insecure-no-sandbox"),
                   help="run Spaces even where no sandbox works (as plain processes of the spacehost user: any "
                        "Space can read the data dir and every secret); without it such a host runs no Space")
    p.add_argument("--freeze-after", type=int, default=int(_env("freeze-after", "30") or 30),
                   help="freeze a Space idle this many seconds (its CPU goes to zero, a request thaws it in "
                        "milliseconds; 0: never); it is killed after its sleep time as before (default 30)")
    p.add_argument("--min-available-mb", type=int, default=int(_env("min-available-mb", "1024") or 1024),
                   help="while MemAvailable is below this, frozen Spaces fall asleep (killed), the longest "
                        "idle first (default 1024)")
    p.add_argument("--keep-spaces", action="store_true", default=_flag("keep-spaces"),
                   help="leave the Spaces running when spacehost stops, for a restart to re-adopt them "
                        "(default: stop them, SIGTERM then SIGKILL after a grace)")


def settings_from(args: argparse.Namespace) -> Settings:
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("spacehost: --tls-cert and --tls-key go together")
    build_ca = args.build_ca or os.environ.get("SSL_CERT_FILE")
    return Settings(
        data_dir=Path(args.data_dir), host=args.host, port=args.port, domain=args.domain, runtime=args.runtime,
        spaces_domain=args.spaces_domain,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None, tls_key=Path(args.tls_key) if args.tls_key else None,
        tls=args.tls, zerogpu_devices=args.zerogpu_devices, zerogpu_quota_anonymous_s=args.zerogpu_quota_anonymous,
        zerogpu_quota_signed_in_s=args.zerogpu_quota_signed_in, build_ca=Path(build_ca) if build_ca else None,
        direct_port_base=args.direct_port_base, docker_base_image=args.docker_base_image,
        docker_network=args.docker_network, access_log=args.access_log,
        insecure_no_sandbox=args.insecure_no_sandbox, keep_spaces=args.keep_spaces,
        freeze_after_s=args.freeze_after, min_available_mb=args.min_available_mb,
    )


def token_command(accounts: Accounts, args: argparse.Namespace) -> None:
    """`token create|list|revoke USER [NAME_OR_ID]`: list shows ids and names, never values (only digests are
    kept); revoke ends the sessions the token opened, and it gets 401 from then on."""
    if args.action == "create":
        print(accounts.create_token(args.name, role=args.role, display_name=args.token_name))
    elif args.action == "list":
        for t in accounts.tokens(args.name):
            print(f"{t.id}\t{t.display_name}\t{t.role}\t{t.created_at:%Y-%m-%d %H:%M:%S}")
    else:
        if not args.target:
            raise SystemExit("spacehost: token revoke needs the token's NAME_OR_ID (spacehost token list USER)")
        t = accounts.revoke_token(args.name, args.target)
        print(f"token {t.id} ({t.display_name}) of {t.user} revoked")


def read_password() -> str:
    """A new password: typed twice at a terminal, else the first line of stdin."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("spacehost: the passwords differ")
    return first


# Commands that need the [cluster] extra (celery, redis: not installed by `make up`), and its modules they import.
CLUSTER_EXTRA = {"server": ("redis",), "node": ("redis",), "worker": ("celery", "redis")}


def missing_extra(cmd: str) -> list[str]:
    """The modules of the [cluster] extra that `cmd` needs and this environment lacks."""
    return [m for m in CLUSTER_EXTRA.get(cmd, ()) if importlib.util.find_spec(m) is None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spacehost", description="Self-hosted Hugging Face-style Spaces")
    sub = parser.add_subparsers(dest="cmd", required=True)
    up_parser(sub)
    from spacehost import cluster_cli

    cluster_cli.add_parsers(sub)
    worker_parser(sub)
    for what in ("user", "org", "token"):
        p = sub.add_parser(what, help=f"manage {what}s")
        p.add_argument("--data-dir", default=_env("data-dir", ".spacehost"))
        actions = {"user": ["create"], "org": ["create", "add-member"], "token": ["create", "list", "revoke"]}
        p.add_argument("action", choices=actions[what])
        p.add_argument("name")
        if what == "user":
            p.add_argument("--admin", action="store_true")
            p.add_argument("--password", action="store_true",
                           help="set a password for the web sign-in (prompted, or read from stdin)")
        if what == "token":
            p.add_argument("target", nargs="?", metavar="NAME_OR_ID", help="revoke: the token's name or id")
            p.add_argument("--role", choices=["read", "write"], default="write")
            p.add_argument("--token-name", default="cli")
        if what == "org":
            p.add_argument("--member", help="user to add (add-member) or the first admin (create)")
            p.add_argument("--role", choices=["read", "write", "admin"], default="write")
    from spacehost.ps import ps_parser, run_ps
    from spacehost.ssh import run_ssh, ssh_parser

    ssh_parser(sub)
    ps_parser(sub)
    args = parser.parse_args(argv)
    if missing := missing_extra(args.cmd):
        raise SystemExit(f"spacehost {args.cmd}: needs the cluster extra (no {', '.join(missing)} here): "
                         "pip install 'spacehost[cluster]'")
    if args.cmd == "ssh":
        return run_ssh(args)
    if args.cmd == "ps":
        return run_ps(args)
    if args.cmd in cluster_cli.COMMANDS:
        return cluster_cli.run(args)
    if args.cmd == "worker":
        return run_worker(args)
    if args.cmd == "up":
        from spacehost.embedded import run_embedded

        run_embedded(settings_from(args))
        return 0
    from hub.accounts import Accounts
    from spacehost.embedded import open_store

    accounts = Accounts(open_store(Settings(data_dir=Path(args.data_dir))))
    try:
        if args.cmd == "user":
            if accounts.get(args.name) is None or not args.password:
                accounts.create(args.name, admin=args.admin)
                print(f"user {args.name} created; make a token with: spacehost token create {args.name}")
            if args.password:
                accounts.set_password(args.name, read_password())
                print(f"{args.name} can now sign in on the web with that password")
        elif args.cmd == "token":
            token_command(accounts, args)
        elif args.action == "create":
            accounts.create(args.name, kind="org")
            if args.member:
                accounts.set_member(args.name, args.member, "admin")
            print(f"organization {args.name} created")
        else:
            if not args.member:
                raise SystemExit("spacehost: org add-member needs --member USER")
            accounts.set_member(args.name, args.member, args.role)
            print(f"{args.member} is now {args.role} in {args.name}")
    except SpacehostError as e:
        print(f"spacehost: {e.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
