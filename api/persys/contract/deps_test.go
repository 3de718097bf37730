package contract_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The messages, this contract and the pure decision packages link no
// gRPC: the services and their stubs live in persysv1grpc.
func TestPurePackagesLinkNoGRPC(t *testing.T) {
	pure := []string{
		"github.com/persys-dev/compute/api/persys/v1",
		"github.com/persys-dev/compute/api/persys/contract",
		"github.com/persys-dev/compute/internal/model",
		"github.com/persys-dev/compute/internal/placement",
		"github.com/persys-dev/compute/internal/reconcile",
		"github.com/persys-dev/compute/internal/manifest",
	}
	for _, p := range pure {
		out, err := exec.Command("go", "list", "-deps", p).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", p, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == "google.golang.org/grpc" || strings.HasPrefix(dep, "google.golang.org/grpc/") {
				t.Errorf("%s links %s", p, dep)
				break
			}
		}
	}
}
