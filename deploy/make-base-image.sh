#!/usr/bin/env bash
# Makes the base image of Space builds, NAME (default spacehost/base:bookworm), without any image registry:
# debootstrap a minimal Debian bookworm (or $SUITE) with Python, then `docker import` it. Idempotent: skips when
# NAME exists.
# Mirror: $DEBIAN_MIRROR, else the first deb.debian.org-style URI of apt's configured sources.
set -euo pipefail
name=${1:-${SPACEHOST_DOCKER_BASE_IMAGE:-spacehost/base:bookworm}}
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker)
if "$DOCKER" image inspect "$name" >/dev/null 2>&1; then
  exit 0
fi
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '(https?://[^ ]+/debian)/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
           | head -n1 | tr -d ' ' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
root=$(mktemp -d /var/tmp/spacehost-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
suite=${SUITE:-bookworm}
echo "==> debootstrap $suite from $mirror (about a minute)"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  "$suite" "$root" "$mirror" > "$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; exit 1; }
rm -f "$root.log"
# A smaller image: no apt lists or caches (builds run apt-get update first).
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
echo "==> docker import $name"
tar -C "$root" -c . | "$DOCKER" import \
  -c 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["/bin/bash"]' - "$name" >/dev/null
echo "==> base image $name ready"
