package scheduler

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// A heartbeat's repairs are bounded at the boundary: too many, or a field
// too long, is refused naming the field.
func TestCheckRepairs(t *testing.T) {
	ok := []*persysv1.AgentRepair{{Workload: "w", Runtime: "container", Action: "started created container"}}
	if err := checkRepairs(ok); err != nil {
		t.Fatalf("a valid repair refused: %v", err)
	}
	many := make([]*persysv1.AgentRepair, maxRepairsPerHeartbeat+1)
	for i := range many {
		many[i] = ok[0]
	}
	long := []*persysv1.AgentRepair{ok[0], {Workload: "w", Detail: strings.Repeat("x", maxRepairField+1)}}
	for _, c := range []struct {
		rs    []*persysv1.AgentRepair
		field string
	}{{many, "repairs:"}, {long, "repairs[1].detail"}} {
		err := checkRepairs(c.rs)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.field) {
			t.Errorf("got %v, want InvalidArgument naming %s", err, c.field)
		}
	}
}
