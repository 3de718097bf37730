#!/usr/bin/env bash
# Removes what an interrupted test/cluster run left behind: containers
# (agents and their workloads) and networks labelled cluster.run. With a run
# id (the hex id in the test log), only that run's; without one, every run's,
# so do not use it while another cluster test is running.
set -euo pipefail

filter="label=cluster.run"
[ $# -ge 1 ] && filter="label=cluster.run=$1"

# Agents first, so nothing starts new workloads while we remove them.
ids=$(docker ps -aq --filter "$filter" --filter label=cluster.role=agent)
[ -n "$ids" ] && docker rm -f $ids >/dev/null
ids=$(docker ps -aq --filter "$filter")
[ -n "$ids" ] && docker rm -f $ids >/dev/null
nets=$(docker network ls -q --filter "$filter")
[ -n "$nets" ] && docker network rm $nets >/dev/null
echo "cluster-clean: removed leftovers matching $filter"
