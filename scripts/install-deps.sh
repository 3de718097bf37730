#!/usr/bin/env bash
# Installs the Debian packages the project needs on a fresh machine. Safe to
# run again: it only installs what is missing.
#   install-deps.sh          what building and testing need
#   install-deps.sh proto    also protoc and the well-known .proto files
set -euo pipefail

need=()
command -v docker >/dev/null 2>&1 || need+=(docker.io)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
command -v git >/dev/null 2>&1 || need+=(git)
# Virtual machines: QEMU under TCG, and what builds the tiny test guest.
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
command -v genisoimage >/dev/null 2>&1 || need+=(genisoimage)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v depmod >/dev/null 2>&1 || need+=(kmod)
command -v socat >/dev/null 2>&1 || need+=(socat)
# Private-image tests run a registry with authentication on loopback.
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
# deploy/compose is brought up in a test with the Debian docker-compose.
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
# Monitoring as code: promtool checks and unit-tests the alert rules, and the
# end-to-end test scrapes a cluster with a real Prometheus.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# Release artifacts: the systemd units are checked with systemd-analyze.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# The Debian package is installed in a clean bookworm container made with
# debootstrap from the configured apt mirror (scripts/debian-image.sh).
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
# The web console is tested in a real headless Chromium driven from Go.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# Its client-certificate login test fills an NSS database (certutil,
# pk12util) from a PKCS#12 file that openssl makes.
command -v pk12util >/dev/null 2>&1 || need+=(libnss3-tools)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The NAT test runs an agent in a network namespace of its own (ip, ss)
# behind a firewall that drops connections from outside (iptables).
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
if [ "${1:-}" = proto ]; then
  command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
  [ -f /usr/include/google/protobuf/timestamp.proto ] || need+=(libprotobuf-dev)
fi

if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
