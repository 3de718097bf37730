#!/usr/bin/env bash
# Builds the persys OCI image from deploy/image/Dockerfile with Docker's
# legacy builder (no base image is pulled):
#   build-image.sh [TAG]        default persys:<version>
# The binary comes from scripts/dist.sh for this machine's architecture; its
# SBOM is kept in the image at /usr/share/doc/persys/sbom.spdx.json.
set -euo pipefail
cd "$(dirname "$0")/.."

version="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
tag="${1:-persys:$version}"
arch="$(go env GOARCH)"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT

VERSION="$version" PLATFORMS="linux/$arch" DIST_DIR="$ctx/dist" bash scripts/dist.sh >/dev/null
root="$ctx/rootfs"
# Mount points owned by the persys user: a named volume mounted on one
# takes its owner, so the non-root daemons can write it.
mkdir -p "$root/usr/bin" "$root/etc/ssl/certs" "$root/usr/share/doc/persys" "$root/tmp" \
  "$ctx/data/pki" "$ctx/data/join" "$ctx/data/scheduler" "$ctx/data/agent"
cp "$ctx/dist/persys_${version}_linux_${arch}" "$root/usr/bin/persys"
cp "$ctx/dist/persys_${version}.spdx.json" "$root/usr/share/doc/persys/sbom.spdx.json"
# Git sources over HTTPS and the registries' TLS need the public roots.
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\npersys:x:65532:65532:persys:/var/lib/persys:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\npersys:x:65532:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"
cp deploy/image/Dockerfile "$ctx/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q --build-arg VERSION="$version" -t "$tag" "$ctx" >/dev/null 2>"$ctx/build.err" ||
  { cat "$ctx/build.err" >&2; exit 1; }
echo "built $tag ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
