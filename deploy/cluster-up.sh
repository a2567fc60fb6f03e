#!/usr/bin/env bash
# `make cluster`: PostgreSQL, Redis (Debian's packages, installed where missing), `spacehost server`, a build
# worker, a proxy and two node agents on 127.0.0.2 and 127.0.0.3, all on this machine. Ctrl-C stops all of it.
# Flags: deploy/cluster/up.py --help. SPACEHOST_* variables pass through to the roles, as with `make up`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
need=()
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ "${SPACEHOST_RUNTIME:-process}" = docker ]; then  # docker nodes: an engine, and a registry between builds and nodes
  command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
  command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${need[@]}" >/dev/null
fi
if [ -x "$here/install-runtime-deps.sh" ]; then "$here/install-runtime-deps.sh"; fi
if [ "${SPACEHOST_RUNTIME:-process}" = docker ]; then "$here/start-dockerd.sh"; fi
cd "$here/.."
exec "${VENV:-.venv}/bin/python" -m deploy.cluster.up "$@"
