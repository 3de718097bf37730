#!/usr/bin/env bash
# Installs the Debian packages the project needs on a fresh machine. Safe to
# run again: it only installs what is missing.
#   install-deps.sh          what building and testing need
#   install-deps.sh proto    also protoc and the well-known .proto files
set -euo pipefail

need=()
command -v docker >/dev/null 2>&1 || need+=(docker.io)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ "${1:-}" = proto ]; then
  command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
  [ -f /usr/include/google/protobuf/timestamp.proto ] || need+=(libprotobuf-dev)
fi

if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
