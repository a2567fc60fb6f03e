"""The cluster subcommands of `spacehost`: server, proxy, node, nodes. Flags also come from `SPACEHOST_<FLAG>`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import httpx

from hub.accounts import join_token
from spacehost.flags import env, settings_from

COMMANDS = ("server", "proxy", "node", "nodes")


def role_token() -> str | None:
    """The token a node agent, proxy or build worker joins with unless given one: SPACEHOST_TOKEN, else the join
    token derived from the installation key SPACEHOST_SECRET_KEY (the one `spacehost nodes token` prints). A role
    holding the key can derive it anyway; so it joins without an admin's token, before any server answers
    (deploy/compose.yaml)."""
    token, key = os.environ.get("SPACEHOST_TOKEN"), os.environ.get("SPACEHOST_SECRET_KEY")
    if token or not key:
        return token
    return join_token(key.encode())  # the key as Settings.secret_key reads it


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The cluster subcommands; `server` takes every flag of `up` (added before) and its own."""
    p = sub.add_parser("server", help="cluster: hub API + scheduler (PostgreSQL at SPACEHOST_DATABASE_URL, Redis "
                                      "at SPACEHOST_REDIS_URL); --port is the public (proxy) port")
    for action in sub.choices["up"]._actions:
        if action.dest != "help":
            p._add_action(action)
    p.add_argument("--listen", default=env("listen", "127.0.0.1:8081"), help="HOST:PORT of the API (default "
                   "127.0.0.1:8081); proxies and nodes call it")
    p.add_argument("--redis-url", default=env("redis-url"))
    p = sub.add_parser("proxy", help="cluster: a proxy serving the Spaces, routes from the server")
    p.add_argument("--server", default=env("server"), required=env("server") is None)
    p.add_argument("--token", default=role_token(), required=role_token() is None)
    p.add_argument("--host", default=env("host", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env("port", "8080") or 8080))
    p.add_argument("--data-dir", default=env("data-dir", ".spacehost-proxy"))
    p = sub.add_parser("node", help="cluster: a node agent running the Spaces assigned to it")
    p.add_argument("--server", default=env("server"), required=env("server") is None)
    p.add_argument("--token", default=role_token(), required=role_token() is None)
    p.add_argument("--name", default=env("node-name"), required=env("node-name") is None)
    p.add_argument("--address", default=env("address", "127.0.0.1"))
    p.add_argument("--data-dir", default=env("data-dir", ".spacehost-node"))
    p.add_argument("--runtime", choices=["process", "docker"], default=env("runtime", "process"))
    p.add_argument("--registry", default=env("registry"), help="docker: the registry (host:port) as this node "
                   "reaches it; images are pulled from it by digest (default: the address the build pushed to)")
    p.add_argument("--zerogpu-devices", type=int, default=int(env("zerogpu-devices", "0") or 0))
    p.add_argument("--zerogpu-quota-anonymous", type=int, default=int(env("zerogpu-quota-anonymous", "120") or 120),
                   help="daily ZeroGPU seconds per anonymous visitor (the server's and every node's alike)")
    p.add_argument("--zerogpu-quota-signed-in", type=int, default=int(env("zerogpu-quota-signed-in", "300") or 300),
                   help="daily ZeroGPU seconds per signed-in user (the server's and every node's alike)")
    p.add_argument("--gpus", type=int, default=int(env("gpus", "0") or 0), help="GPUs for dedicated GPU flavors")
    p.add_argument("--accelerator", default=env("accelerator"), help="a10g, t4, … of --gpus")
    p.add_argument("--labels", default=env("labels", ""), help="k=v,… matched by placement")
    p.add_argument("--cpus", type=float, default=float(env("cpus", "0") or 0), help="capacity (default: this machine's)")
    p.add_argument("--memory-gb", type=float, default=float(env("memory-gb", "0") or 0))
    p.add_argument("--redis-url", default=env("redis-url"), help="default: the server's, given at registration")
    p.add_argument("--insecure-no-sandbox", action="store_true")
    p.add_argument("--keep-spaces", action="store_true", default=env("keep-spaces") not in (None, "", "0"),
                   help="leave the Spaces running when the agent stops (a restart re-adopts them)")
    p = sub.add_parser("nodes", help="cluster: list, cordon, uncordon or drain nodes; `token`: the join token that "
                       "node agents, build workers and proxies use (the cluster API only, no admin)")
    p.add_argument("--server", default=env("server", "http://127.0.0.1:8081"))
    p.add_argument("--token", default=env("token") or env("admin-token"))
    p.add_argument("action", nargs="?", default="list", choices=["list", "cordon", "uncordon", "drain", "token"])
    p.add_argument("name", nargs="?")


def run(args: argparse.Namespace) -> int:
    if args.cmd == "server":
        from spacehost.cluster import run_server

        redis_url = args.redis_url or "redis://127.0.0.1:6379/0"
        host, _, port = args.listen.rpartition(":")
        run_server(settings_from(args), redis_url, host or "127.0.0.1", int(port))
        return 0
    if args.cmd == "proxy":
        from proxy.remote import run_proxy

        run_proxy(args.server, args.token, args.host, args.port, Path(args.data_dir))
        return 0
    if args.cmd == "node":
        from scheduler.node_agent import run_node
        from scheduler.node_state import NodeConfig, parse_labels

        run_node(NodeConfig(args.server, args.token, args.name, args.address, Path(args.data_dir).absolute(),
                            runtime=args.runtime, cpus=args.cpus, memory_gb=args.memory_gb, gpus=args.gpus,
                            accelerator=args.accelerator, labels=parse_labels(args.labels),
                            zerogpu_devices=args.zerogpu_devices,
                            zerogpu_quota_anonymous_s=args.zerogpu_quota_anonymous,
                            zerogpu_quota_signed_in_s=args.zerogpu_quota_signed_in,
                            insecure_no_sandbox=args.insecure_no_sandbox,
                            redis_url=args.redis_url, keep_spaces=args.keep_spaces, registry=args.registry))
        return 0
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    with httpx.Client(base_url=args.server, headers=headers, timeout=30) as c:
        if args.action == "token":
            r = c.get("/api/admin/cluster/join-token")
            if r.status_code == 200:
                print(r.json()["token"])
                return 0
        elif args.action == "list":
            r = c.get("/api/admin/nodes")
        elif not args.name:
            print(f"spacehost: nodes {args.action} needs a node name", file=sys.stderr)
            return 2
        else:
            r = c.post(f"/api/admin/nodes/{args.name}/{args.action}")
    if r.status_code != 200:
        print(f"spacehost: {r.status_code} {r.text[:500]}", file=sys.stderr)
        return 1
    data = r.json()
    for n in data if isinstance(data, list) else [data]:
        state = "Ready" if n["ready"] else ("Lost" if n["lost"] else "NotReady")
        flags = ",".join(f for f in ("cordoned", "draining") if n[f])
        print(f"{n['name']:<16} {n['address']:<16} {state + (',' + flags if flags else ''):<24} "
              f"cpu {n['allocated']['cpu']:g}/{n['capacity']['cpu']:g}  mem {n['allocated']['memory_gb']:g}/"
              f"{n['capacity']['memory_gb']:g} GB  gpu {n['allocated']['gpus']}/{n['capacity']['gpus']}  "
              f"spaces {json.dumps(n['spaces'])}")
    return 0
