#!/usr/bin/env bash
# Builds the example image persys-hello:latest (used by `make demo`): a static
# build of ./examples/hello copied into a FROM scratch image with the legacy
# builder, so no registry is needed.
#   build-images.sh [TAG]    default tag persys-hello:latest
set -euo pipefail

tag="${1:-persys-hello:latest}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT

(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$ctx/hello" ./examples/hello)
cp "$root/examples/hello/Dockerfile" "$ctx/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx" >/dev/null 2>"$ctx/build.err" || { cat "$ctx/build.err" >&2; exit 1; }
echo "built $tag"
