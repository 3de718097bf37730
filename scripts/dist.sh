#!/usr/bin/env bash
# `make dist`: release artifacts in one command.
#   dist/persys_<version>_<os>_<arch>       static persys (CGO_ENABLED=0)
#   dist/persysctl_<version>_<os>_<arch>    static persysctl
#   dist/persys_<debversion>_<arch>.deb     Debian package (tools/deb, nFPM)
#   dist/SHA256SUMS                         sha256sum -c compatible
#   dist/persys_<version>.spdx.json         SPDX 2.3 SBOM (tools/sbom)
# Version, commit and build date are stamped into internal/buildinfo; the
# date is the commit's time, so two builds of one commit are identical.
#
#   VERSION=v1.2.3 scripts/dist.sh
#   PLATFORMS="linux/amd64" DIST_DIR=/tmp/out scripts/dist.sh
set -euo pipefail
cd "$(dirname "$0")/.."

version="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
commit="${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
date="${BUILD_DATE:-$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)}"
platforms="${PLATFORMS:-linux/amd64 linux/arm64}"
out="${DIST_DIR:-$PWD/dist}"

pkg=github.com/persys-dev/compute/internal/buildinfo
ldflags="-s -w -X $pkg.version=$version -X $pkg.commit=$commit -X $pkg.date=$date"

mkdir -p "$out"
rm -f "$out"/persys_* "$out"/persysctl_* "$out"/SHA256SUMS
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
go build -o "$tools/sbom" ./tools/sbom
go build -o "$tools/deb" ./tools/deb
built=()
debs=()
for p in $platforms; do
  os="${p%/*}"; arch="${p#*/}"
  for cmd in persys persysctl; do
    f="$out/${cmd}_${version}_${os}_${arch}"
    CGO_ENABLED=0 GOOS="$os" GOARCH="$arch" go build -trimpath -ldflags "$ldflags" -o "$f" "./cmd/$cmd"
    built+=("$f")
  done
  if [ "$os" = linux ]; then
    debs+=("$("$tools/deb" -version "$version" -arch "$arch" -mtime "$date" -o "$out" \
      -persys "$out/persys_${version}_${os}_${arch}" -persysctl "$out/persysctl_${version}_${os}_${arch}")")
  fi
done
"$tools/sbom" -version "$version" -created "$date" -o "$out/persys_${version}.spdx.json" "${built[@]}"
(cd "$out" && sha256sum -- $(for f in "${built[@]}" "${debs[@]}" "$out/persys_${version}.spdx.json"; do basename "$f"; done) >SHA256SUMS)
echo "dist: $version ($commit, $date) in $out:"
(cd "$out" && ls -l -- $(awk '{print $2}' SHA256SUMS) SHA256SUMS | awk '{printf "  %10d  %s\n", $5, $9}')
