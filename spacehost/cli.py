"""`spacehost` command line. Every flag of `up` may also come from `SPACEHOST_<FLAG>` (spacehost/flags.py)."""

from __future__ import annotations

import argparse
import faulthandler
import importlib.util
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import SpacehostError
from core.settings import Settings
from spacehost import cluster_cli
from spacehost.flags import env, settings_from, up_parser
from spacehost.worker import run_worker, worker_parser

if TYPE_CHECKING:
    from hub.accounts import Accounts


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
    # `kill -USR1 <pid>` prints every thread's stack to stderr (the log): what a stuck server is doing
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    parser = argparse.ArgumentParser(prog="spacehost", description="Self-hosted Hugging Face-style Spaces")
    sub = parser.add_subparsers(dest="cmd", required=True)
    up_parser(sub)
    cluster_cli.add_parsers(sub)
    worker_parser(sub)
    for what in ("user", "org", "token"):
        p = sub.add_parser(what, help=f"manage {what}s")
        p.add_argument("--data-dir", default=env("data-dir", str(Settings.data_dir)))
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
