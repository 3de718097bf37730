#!/bin/sh
# Keeps an nginx upstream file current from a service's endpoints watch.
#
#   follow.sh SERVICE [UPSTREAM_FILE]
#
# Each line of `persysctl get endpoints SERVICE --watch -o json` is the
# whole set of ready replicas (SNAPSHOT first, then UPDATE at every
# change). For each, this writes one `server ADDRESS:PORT;` per endpoint
# (the node's address and the host port of the first published port)
# into UPSTREAM_FILE, atomically, and reloads nginx when it changed.
# A replica being removed leaves the set update.drainDelay (default 2s)
# before it is stopped, which is the reload's time budget.
#
# Include the file in an upstream block:
#   upstream web { include /etc/nginx/upstreams/web.conf; }
# Needs persysctl (configured), jq and nginx.
set -eu

service=${1:?usage: follow.sh SERVICE [UPSTREAM_FILE]}
file=${2:-/etc/nginx/upstreams/$service.conf}

persysctl get endpoints "$service" --watch -o json | while IFS= read -r line; do
	tmp="$file.tmp"
	{
		echo "# $service at etcd revision $(printf '%s' "$line" | jq -r .revision)"
		printf '%s' "$line" | jq -r '.endpoints[] | select(.ports != null) | "server \(.nodeAddress):\(.ports[0].hostPort);"'
		# nginx refuses an empty upstream: keep a placeholder that fails fast.
		printf '%s' "$line" | jq -e '.endpoints | length > 0' >/dev/null || echo "server 127.0.0.1:1 down;"
	} >"$tmp"
	if cmp -s "$tmp" "$file" 2>/dev/null; then
		rm -f "$tmp"
		continue
	fi
	mv "$tmp" "$file"
	nginx -s reload
	echo "$(date -u +%H:%M:%S) $service: $(grep -c '^server' "$file") server line(s)" >&2
done
