#!/usr/bin/env bash
# Installs (Debian packages) and starts what the test suite needs, where missing. Idempotent.
set -euo pipefail
need=()
for pair in bwrap:bubblewrap redis-server:redis-server nginx:nginx wrk:wrk chromium:chromium \
            chromedriver:chromium-driver dockerd:docker.io git-lfs:git-lfs debootstrap:debootstrap \
            iptables-restore:iptables ss:iproute2 npm:npm docker-registry:docker-registry \
            docker-compose:docker-compose; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done
# PostgreSQL for the cluster tests and `make cluster` (Debian keeps its binaries off PATH).
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${need[@]}" >/dev/null
fi
here=$(cd "$(dirname "$0")" && pwd)
if [ -x "$here/start-dockerd.sh" ]; then "$here/start-dockerd.sh"; fi
if [ -x "$here/make-base-image.sh" ]; then "$here/make-base-image.sh" "${SPACEHOST_DOCKER_BASE_IMAGE:-spacehost/base:bookworm}"; fi
# axe-core (accessibility checks of the web UI's pages), from npm, pinned in tests/e2e/package.json.
e2e="$here/../tests/e2e"
if [ ! -f "$e2e/node_modules/axe-core/axe.min.js" ]; then (cd "$e2e" && npm install --no-audit --no-fund -q >/dev/null); fi
echo "==> test dependencies ready"
