#!/usr/bin/env bash
# Runs the multi-node tests of test/cluster: three schedulers and a gateway
# as host processes, agents in containers on a private Docker network,
# workloads on this machine's engine. Prints each scenario's summary line
# and the overall line at the end
# ("cluster: <scenario> submitted=N lost=N duplicated=N ... <timings>").
#
#   scripts/cluster-test.sh                          # every cluster test
#   scripts/cluster-test.sh -run TestDrain           # extra go test flags
#   PERSYS_BIN_DIR=bin scripts/cluster-test.sh       # prebuilt static persys + persysctl
#   PERSYS_CLUSTER_BURST=200 scripts/cluster-test.sh # a bigger leader-failover burst
#   PERSYS_CLUSTER_LOGS=/tmp/logs scripts/cluster-test.sh  # keep every daemon's full log
#   PERSYS_CLUSTER_RESCHEDULE=0 scripts/cluster-test.sh    # node-loss test without rescheduling
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-docker.sh
export CGO_ENABLED=1   # the race detector needs cgo

log=$(mktemp /tmp/persys-cluster-test.XXXXXX)
status=0
go test -race -count=1 -timeout 15m -v "$@" ./test/cluster/ 2>&1 | tee "$log" || status=$?
echo "== summaries"
grep -E -- '--- (PASS|FAIL|SKIP)|cluster: ' "$log" | grep -v 'cleanup took' | sed -E 's/^ +[a-z_]+_test\.go:[0-9]+: //' || true
rm -f "$log"
exit "$status"
