#!/usr/bin/env bash
# Makes sure a Docker Engine answers on this machine, starting the daemon when
# it is installed but not running. Exits non-zero when no engine can be had.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  bash "$(dirname "$0")/install-deps.sh"
fi
if command -v service >/dev/null 2>&1; then
  service docker start >/dev/null 2>&1 || true
fi
if ! docker info >/dev/null 2>&1 && command -v dockerd >/dev/null 2>&1; then
  nohup dockerd >/tmp/persys-dockerd.log 2>&1 &
fi
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "ensure-docker: no Docker Engine answers (see /tmp/persys-dockerd.log)" >&2
exit 1
