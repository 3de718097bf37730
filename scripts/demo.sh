#!/usr/bin/env bash
# `make demo`: a real cluster of one on this machine. Installs what is
# missing, builds the binaries and the example image, starts `persys dev` in
# the background, applies examples/hello.yaml, waits until it runs and shows
# it; each step says what it does and how long it took.
# `make demo-down`: deletes every service and workload of the dev cluster
# (not only the example), stops the cluster, removes what its node left on the engine
# (containers, compose networks and volumes, VM processes) and the data
# dir, and says what it removed. DEMO_KEEP_DATA=1 keeps the data dir.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${DEV_DIR:-$PWD/.persys-dev}"
pidfile="$dir/dev.pid"
logfile="$dir/dev.log"
export PERSYSCTL_CONFIG="$dir/persysctl.yaml"
ctl=./bin/persysctl

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

# step TITLE CMD...: runs CMD with its output indented, then the time it took.
step() {
  local title=$1; shift
  local start=$SECONDS
  echo "==> $title"
  set +e
  "$@" 2>&1 | sed 's/^/    /'
  local rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" != 0 ]; then
    echo "==> $title: failed (exit $rc) after $((SECONDS - start)) s" >&2
    exit "$rc"
  fi
  echo "    done in $((SECONDS - start)) s"
}

start_cluster() {
  mkdir -p "$dir"
  if running; then
    echo "persys dev already runs (pid $(cat "$pidfile"))"
    return
  fi
  nohup ./bin/persys dev --data-dir "$dir" >"$logfile" 2>&1 &
  echo $! >"$pidfile"
  echo "started persys dev (pid $!), log: $logfile"
  # Wait until the local node has registered: the cluster can place work.
  for i in $(seq 1 120); do
    if [ -f "$PERSYSCTL_CONFIG" ] && $ctl get nodes 2>/dev/null | grep -q READY; then
      break
    fi
    if ! running; then
      echo "persys dev exited; last lines of $logfile:"; tail -n 30 "$logfile"; return 1
    fi
    [ "$i" = 120 ] && { echo "cluster not ready after 60 s; see $logfile"; return 1; }
    sleep 0.5
  done
  $ctl get nodes
  # Remember the node, so that down cleans up only what this node runs.
  $ctl get nodes -o name | sed -n 's#^node/##p' | head -n 1 >"$dir/node-id"
}

apply_example() {
  $ctl apply -f examples/hello.yaml --wait --timeout 2m
  $ctl get workloads
  # Running means the process started; give it a moment to bind its port.
  for _ in $(seq 1 50); do curl -fsS http://127.0.0.1:18080/ 2>/dev/null && return; sleep 0.1; done
  echo "the example does not answer on http://127.0.0.1:18080/"; return 1
}

up() {
  local total=$SECONDS
  step "installing missing packages (scripts/install-deps.sh)" bash scripts/install-deps.sh
  step "building persys and persysctl into bin/" make --no-print-directory build
  step "starting the Docker engine if it is not running" bash scripts/ensure-docker.sh
  step "building the example image persys-hello:latest" bash scripts/build-images.sh persys-hello:latest
  step "starting persys dev (embedded etcd, scheduler, gateway, agent) in $dir" start_cluster
  step "applying examples/hello.yaml and waiting until it runs" apply_example
  echo
  echo "Ready in $((SECONDS - total)) s. The example answers on http://127.0.0.1:18080/"
  echo "Cluster files:     $dir (log dev.log, CA and admin certificate in pki/)"
  echo "Use the cluster:   export PERSYSCTL_CONFIG=$PERSYSCTL_CONFIG"
  echo "                   ./bin/persysctl describe workload hello"
  echo "A VM:              bash scripts/build-test-guest.sh $dir/agent/pools/default"
  echo "                   ./bin/persysctl apply -f examples/vm.yaml --wait"
  echo "Stop it:           make demo-down   (DEMO_KEEP_DATA=1 keeps $dir)"
}

# delete_workloads deletes every service of the dev cluster (its
# controller deletes their replicas), then every workload, and waits for
# each to be gone from its node.
delete_workloads() {
  local names
  names=$($ctl get services -o name 2>/dev/null | sed -n 's#^service/##p' || true)
  for n in $names; do
    if $ctl delete service "$n" >/dev/null 2>&1; then
      echo "deleted service $n"
    fi
  done
  # The replicas go with their services; wait for the controller.
  for n in $names; do
    for _ in $(seq 1 120); do
      [ -z "$($ctl get workloads -l "persys.service=$n" -o name 2>/dev/null)" ] && break
      sleep 0.5
    done
  done
  names=$($ctl get workloads -o name 2>/dev/null | sed -n 's#^workload/##p' || true)
  if [ -z "$names" ]; then
    echo "no workloads"
    return
  fi
  for n in $names; do
    if $ctl delete workload "$n" --wait --timeout 90s >/dev/null 2>&1; then
      echo "deleted workload $n"
    else
      echo "workload $n: not confirmed deleted; its leftovers are removed below"
    fi
  done
}

stop_cluster() {
  kill "$(cat "$pidfile")"
  for _ in $(seq 1 40); do running || break; sleep 0.25; done
  if running; then
    kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    echo "persys dev did not stop within 10 s: killed"
  else
    echo "persys dev stopped"
  fi
  rm -f "$pidfile"
}

# sweep removes what the dev node left on this machine: every object it
# creates carries its node's label (containers of other agents on this
# engine are not ours), and its VMs' QEMU processes run from its data dir.
sweep() {
  local node ids
  node=$(cat "$dir/node-id" 2>/dev/null || true)
  if [ -n "$node" ]; then
    ids=$(docker ps -aq --filter label=persys.managed=true --filter "label=persys.node=$node" 2>/dev/null || true)
    [ -n "$ids" ] && docker rm -f $ids >/dev/null && echo "removed containers: $(echo $ids | wc -w)"
    ids=$(docker network ls -q --filter "label=persys.node=$node" 2>/dev/null || true)
    [ -n "$ids" ] && docker network rm $ids >/dev/null && echo "removed compose networks: $(echo $ids | wc -w)"
    ids=$(docker volume ls -q --filter "label=persys.node=$node" 2>/dev/null || true)
    [ -n "$ids" ] && docker volume rm -f $ids >/dev/null && echo "removed compose volumes: $(echo $ids | wc -w)"
  fi
  ids=$(pgrep -f "qemu-system.*$dir/" 2>/dev/null || true)
  [ -n "$ids" ] && kill -9 $ids && echo "stopped VM processes: $(echo $ids | wc -w)"
  echo "nothing else left by node ${node:-?}"
}

down() {
  if running; then
    step "deleting every service and workload of the dev cluster" delete_workloads
    step "stopping persys dev" stop_cluster
  else
    echo "persys dev is not running"
    rm -f "$pidfile"
  fi
  step "removing what the dev node left on this machine" sweep
  if [ "${DEMO_KEEP_DATA:-0}" = 1 ]; then
    echo "kept the data dir $dir (DEMO_KEEP_DATA=1)"
  elif [ -d "$dir" ]; then
    rm -rf "$dir"
    echo "removed the data dir $dir (CA, certificates, etcd data, logs)"
  fi
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
