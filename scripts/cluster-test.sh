#!/usr/bin/env bash
# Runs the multi-node tests of test/cluster: schedulers and a gateway as host
# processes, agents in containers on a private Docker network, workloads on
# this machine's engine. Prints each test's summary line at the end
# ("cluster: nodes=3 workloads=6 lost=0 duplicated=0").
#
#   scripts/cluster-test.sh                      # every cluster test
#   scripts/cluster-test.sh -run TestNodeLoss    # extra go test flags
#   PERSYS_BIN_DIR=bin scripts/cluster-test.sh   # prebuilt static persys + persysctl
#   PERSYS_CLUSTER_RESCHEDULE=1 scripts/cluster-test.sh   # with the rescheduling follow-up
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-docker.sh
export CGO_ENABLED=1   # the race detector needs cgo

log=$(mktemp /tmp/persys-cluster-test.XXXXXX)
status=0
go test -race -count=1 -timeout 10m -v "$@" ./test/cluster/ 2>&1 | tee "$log" || status=$?
echo "== summaries"
grep -E -- '--- (PASS|FAIL|SKIP)|cluster: nodes=' "$log" || true
rm -f "$log"
exit "$status"
