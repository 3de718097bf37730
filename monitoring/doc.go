// Package monitoring holds the operator's monitoring as code: the
// Prometheus scrape configuration (prometheus.yml), the alert rules
// (alerts.yml) and their unit tests (alerts_test.yml), and the Grafana
// dashboard (grafana/persys.json). The Go tests run promtool on them; the
// end-to-end tests in test/e2e check them against live daemons.
package monitoring

import (
	"embed"
)

// Files are the monitoring files, for tests and tools that need them
// without knowing where the source tree is.
//
//go:embed prometheus.yml alerts.yml alerts_test.yml grafana/persys.json
var Files embed.FS
