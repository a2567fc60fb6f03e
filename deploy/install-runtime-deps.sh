#!/usr/bin/env bash
# What `spacehost up` needs to sandbox Spaces (process runtime): bubblewrap, iproute2 (per-Space network
# namespaces) and iptables (their firewall). Run by `make up`. Idempotent; never fails the start: where it cannot
# install (not root, no apt-get), it prints exactly what to install and spacehost then refuses to run Spaces
# (unless started with --insecure-no-sandbox). The package list matches core/isolation.py SANDBOX_PACKAGES.
set -uo pipefail
need=()
for pair in bwrap:bubblewrap ip:iproute2 iptables-restore:iptables; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/sbin/$cmd" ] || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing what the Space sandbox needs: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null; then
    exit 0
  fi
  echo "!!! could not install ${need[*]} with apt-get (see above)" >&2
fi
cat >&2 <<MSG
!!! The Space sandbox needs: ${need[*]}
!!! Install them as root, e.g. on Debian/Ubuntu:  apt-get install ${need[*]}
!!! (other distributions: the same packages with their package manager), then run spacehost as root.
!!! Until then spacehost runs no Space, unless started with
!!! --insecure-no-sandbox (SPACEHOST_INSECURE_NO_SANDBOX=1), which leaves Spaces unisolated.
MSG
exit 0
