#!/usr/bin/env bash
# Starts the Docker engine in the background unless one already answers; waits until `docker info` works.
# Idempotent. Log: $DOCKERD_LOG (default /var/log/spacehost-dockerd.log).
set -euo pipefail
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker)
log=${DOCKERD_LOG:-/var/log/spacehost-dockerd.log}
if "$DOCKER" info >/dev/null 2>&1; then
  exit 0
fi
dockerd_bin=$(command -v dockerd || echo /usr/sbin/dockerd)
if ! pgrep -x dockerd >/dev/null 2>&1; then
  echo "==> starting dockerd (log: $log)"
  mkdir -p "$(dirname "$log")"
  # setsid: the engine outlives the shell (and the test session) that started it.
  setsid "$dockerd_bin" >>"$log" 2>&1 < /dev/null &
fi
for _ in $(seq 1 120); do
  if "$DOCKER" info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 0.5
done
echo "dockerd did not become ready within 60 s; last log lines:" >&2
tail -n 30 "$log" >&2 || true
exit 1
