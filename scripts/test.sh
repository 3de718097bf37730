#!/usr/bin/env bash
# Runs every test against real parts: embedded etcd, the local Docker Engine,
# real mTLS between real binaries. Tests that need Docker fail (not skip) when
# CI is set and no engine answers.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-docker.sh
export CGO_ENABLED=1   # the race detector needs cgo

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -count=1 -timeout 40m "$@" ./...
echo "== go test -race -tags failpoints (the failpoint package as crash tests build it)"
go test -race -count=1 -tags failpoints "$@" ./internal/failpoint/
