#!/usr/bin/env bash
# `make demo`: a real cluster of one on this machine. Builds the binaries and
# the example image, starts `persys dev` in the background, applies
# examples/hello.yaml, waits until it runs and shows it.
# `make demo-down`: deletes the example workload and stops the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${DEV_DIR:-$PWD/.persys-dev}"
pidfile="$dir/dev.pid"
logfile="$dir/dev.log"
export PERSYSCTL_CONFIG="$dir/persysctl.yaml"
ctl=./bin/persysctl

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

up() {
  bash scripts/ensure-docker.sh
  bash scripts/build-images.sh persys-hello:latest
  mkdir -p "$dir"
  if running; then
    echo "persys dev already runs (pid $(cat "$pidfile"))"
  else
    nohup ./bin/persys dev --data-dir "$dir" >"$logfile" 2>&1 &
    echo $! >"$pidfile"
    echo "started persys dev (pid $!), log: $logfile"
  fi
  # Wait until the local node has registered: the cluster can place work.
  for i in $(seq 1 120); do
    if [ -f "$PERSYSCTL_CONFIG" ] && $ctl get nodes 2>/dev/null | grep -q READY; then
      break
    fi
    if ! running; then
      echo "persys dev exited; last lines of $logfile:" >&2; tail -n 30 "$logfile" >&2; exit 1
    fi
    [ "$i" = 120 ] && { echo "cluster not ready after 60 s; see $logfile" >&2; exit 1; }
    sleep 0.5
  done
  $ctl get nodes
  # Remember the node, so that down cleans up only what this node runs.
  $ctl get nodes -o json | sed -n 's/^ *"id": *"\([^"]*\)".*/\1/p' | head -n 1 >"$dir/node-id"
  echo
  $ctl apply -f examples/hello.yaml --wait --timeout 2m
  echo
  $ctl get workloads
  echo
  echo "The example answers on http://127.0.0.1:18080 :"
  # Running means the process started; give it a moment to bind its port.
  for _ in $(seq 1 50); do curl -fsS http://127.0.0.1:18080/ 2>/dev/null && break; sleep 0.1; done
  echo
  echo "Use the cluster:   export PERSYSCTL_CONFIG=$PERSYSCTL_CONFIG"
  echo "                   ./bin/persysctl describe workload hello"
  echo "Stop it:           make demo-down"
}

down() {
  if running; then
    $ctl delete workload hello --wait 2>/dev/null || true
    kill "$(cat "$pidfile")"
    for _ in $(seq 1 40); do running || break; sleep 0.25; done
    running && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    echo "persys dev stopped"
  else
    echo "persys dev is not running"
  fi
  rm -f "$pidfile"
  # What the dev agent left behind carries its node's label; containers of
  # other agents on this engine are not ours to remove.
  node=$(cat "$dir/node-id" 2>/dev/null || true)
  if [ -n "$node" ]; then
    ids=$(docker ps -aq --filter label=persys.managed=true --filter "label=persys.node=$node" 2>/dev/null || true)
    [ -n "$ids" ] && docker rm -f $ids >/dev/null && echo "removed leftover containers of node $node" || true
  fi
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
