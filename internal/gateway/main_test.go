package gateway_test

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gateway"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/testutil/callrec"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// The tests of this package share one real scheduler on embedded etcd,
// with one sim agent (node-1) and one gateway in front, all over mutual
// TLS. Each test uses workload names of its own; tests that cordon or
// drain nodes start a cluster of their own.
var (
	shared   *realsched.Cluster
	sharedGW *realsched.Gateway
	// calls records every call that reaches the shared scheduler.
	calls callrec.Recorder
	// gwMetrics is the shared gateway's registry.
	gwMetrics = prometheus.NewRegistry()
)

// brokenImage is an image node-1's sim runtime fails with IMAGE_NOT_FOUND.
const brokenImage = "example/broken:1"

func TestMain(m *testing.M) {
	os.Exit(realsched.Main(m, func(tb testing.TB) {
		shared = realsched.Start(tb, realsched.Options{Nodes: []string{"node-1"}, ServerOptions: calls.ServerOptions()})
		shared.StartAgent(tb, "node-1", sim.Options{FailImages: map[string]persysv1.FailureReason{
			brokenImage: persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND}})
		sharedGW = shared.StartGateway(tb, func(c *gateway.Config) { c.Registry = gwMetrics })
	}))
}

// workload is webManifest named name, with extra lines appended to its
// spec (indented two spaces).
func workload(name string, specLines ...string) string {
	m := strings.Replace(webManifest, "name: web", "name: "+name, 1)
	m = strings.Replace(m, "app: web", "app: "+name, 1)
	for _, l := range specLines {
		m += "  " + l + "\n"
	}
	return m
}

// unplaceable is a spec line no node matches: the workload stays PENDING.
const unplaceable = "nodeSelector: {zone: nowhere}"

// broken is the spec's image replaced by brokenImage.
func broken(m string) string { return strings.Replace(m, "example/web:1", brokenImage, 1) }
