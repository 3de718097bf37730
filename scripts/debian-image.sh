#!/usr/bin/env bash
# Makes a clean Debian image without any registry: debootstrap
# --variant=minbase of a suite from the apt mirror this machine is
# configured with, then `docker import`. Cached: when the tag exists it
# exits at once.
#   debian-image.sh [TAG]        default persys-debian:bookworm-minbase
#   SUITE=bookworm MIRROR=http://deb.debian.org/debian debian-image.sh
set -euo pipefail

suite="${SUITE:-bookworm}"
tag="${1:-persys-debian:$suite-minbase}"
if docker image inspect "$tag" >/dev/null 2>&1; then
  exit 0
fi
mirror="${MIRROR:-}"
if [ -z "$mirror" ]; then
  # The first URI of the machine's main Debian source (deb822 or one-line).
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi
command -v debootstrap >/dev/null 2>&1 || { echo "debian-image: debootstrap missing (scripts/install-deps.sh installs it)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/persys-debootstrap.XXXXXX")
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase "$suite" "$work/root" "$mirror" >"$work/log" 2>&1 ||
  { tail -n 30 "$work/log" >&2; exit 1; }
# Apt lists and caches are not needed to run dpkg -i; drop them to keep the
# image small.
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
tar -C "$work/root" -c . | docker import -c 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "debian-image: built $tag from $mirror ($suite, minbase)"
