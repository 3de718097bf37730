#!/usr/bin/env bash
# `make bench`: measures
#  0. the real-engine burst (persys bench burst): BURST containers (default
#     100) applied at once to a dev cluster of one against as many
#     concurrent docker run -d of the same image, BURST_ROUNDS rounds;
# and, on an idle dev cluster of one,
#  1. apply→Running of a small container (persysctl apply --wait) against
#     `docker run -d` of the same image, median of N runs each, interleaved;
#  2. the scheduler's resident memory with 100 workloads running;
#  3. etcd revisions an idle cluster of 100 running workloads adds per minute.
# Also runs the Go benchmarks of the pure placement code.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${RUNS:-15}"
idle="${IDLE_SECONDS:-60}"
dir="$(mktemp -d /tmp/persys-bench-XXXX)"
export PERSYSCTL_CONFIG="$dir/persysctl.yaml"
ctl=./bin/persysctl
image=persys-hello:latest

bash scripts/ensure-docker.sh
bash scripts/build-images.sh "$image" >/dev/null

# The burst first, on an idle engine: its own dev cluster (a child process
# on free loopback ports), removed with its containers at the end.
echo "Real-engine burst: ${BURST:-100} containers at once on one node, persys dev against docker run -d:"
./bin/persys bench burst --workloads "${BURST:-100}" --rounds "${BURST_ROUNDS:-3}" --image "$image" --data-dir "$dir"
echo
./bin/persys dev --data-dir "$dir" --scheduler-listen 127.0.0.1:19443 --gateway-listen 127.0.0.1:18443 \
  --metrics-port 19101 >"$dir/dev.log" 2>&1 &
dev=$!
cleanup() {
  kill "$dev" 2>/dev/null || true; wait "$dev" 2>/dev/null || true
  ids=$(docker ps -aq --filter label=persys.managed=true --filter label=bench=persys); [ -n "$ids" ] && docker rm -f $ids >/dev/null || true
  ids=$(docker ps -aq --filter label=bench=docker); [ -n "$ids" ] && docker rm -f $ids >/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 120); do
  [ -f "$PERSYSCTL_CONFIG" ] && $ctl get nodes 2>/dev/null | grep -q READY && break
  sleep 0.5
done

manifest() { # name
  cat <<M
kind: Workload
metadata: {name: $1}
spec:
  type: container
  container: {image: $image, labels: {bench: persys}}
  resources: {cpu: 10m, memory: 8Mi}
M
}
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

: >"$dir/persys.ms"; : >"$dir/docker.ms"
for i in $(seq 1 "$runs"); do
  manifest "lat-$i" >"$dir/lat.yaml"
  t=$(date +%s%N); $ctl apply -f "$dir/lat.yaml" --wait >/dev/null; ms "$t" >>"$dir/persys.ms"
  t=$(date +%s%N); docker run -d --label bench=docker --cpus 0.01 -m 8m "$image" >/dev/null; ms "$t" >>"$dir/docker.ms"
done
p=$(median <"$dir/persys.ms"); d=$(median <"$dir/docker.ms")
echo "apply→Running median over $runs runs: persys ${p} ms, docker run -d ${d} ms, overhead $(awk "BEGIN{print $p-$d}") ms"
echo "  persys runs: $(tr '\n' ' ' <"$dir/persys.ms")"
echo "  docker runs: $(tr '\n' ' ' <"$dir/docker.ms")"
for i in $(seq 1 "$runs"); do $ctl delete workload "lat-$i" >/dev/null; done
ids=$(docker ps -aq --filter label=bench=docker); [ -n "$ids" ] && docker rm -f $ids >/dev/null

# 100 workloads, then resident memory and idle etcd growth.
for i in $(seq 1 100); do manifest "idle-$i" >"$dir/idle.yaml"; $ctl apply -f "$dir/idle.yaml" >/dev/null; done
for _ in $(seq 1 600); do
  n=$($ctl get workloads 2>/dev/null | grep -c 'idle-.*RUNNING' || true)
  [ "$n" -ge 100 ] && break; sleep 0.5
done
echo "workloads running: $($ctl get workloads | grep -c RUNNING)"
rss=$(awk '/VmRSS/{print $2}' /proc/$dev/status)
echo "persys dev (scheduler+gateway+agent+etcd in one process) resident memory with 100 workloads: $((rss/1024)) MiB"
rev() { curl -fsS http://127.0.0.1:19101/metrics | awk '/^persys_scheduler_etcd_revision /{print $2}'; }
sleep 5; r1=$(rev); sleep "$idle"; r2=$(rev)
echo "etcd revisions added by an idle cluster of 100 running workloads in ${idle}s: $(awk "BEGIN{print $r2-$r1}") ($r1 → $r2)"

echo; echo "Go benchmarks (placement):"
go test -run '^$' -bench . -benchmem ./internal/placement/ | grep -E '^Benchmark'
