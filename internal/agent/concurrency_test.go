package agent

import (
	"context"
	"strings"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/sim"
)

// TestMaxConcurrentCallsDeclared: the registration declares how many
// applies and deletes the node takes at once (by default the scheduler's
// default per-node bound); a value outside 1-4096 is refused, naming the
// field.
func TestMaxConcurrentCallsDeclared(t *testing.T) {
	for _, tc := range []struct {
		name    string
		set     int
		want    uint32
		wantErr bool
	}{
		{name: "default", set: 0, want: DefaultMaxConcurrentCalls},
		{name: "fewer", set: 3, want: 3},
		{name: "the most", set: 4096, want: 4096},
		{name: "too many", set: 4097, wantErr: true},
		{name: "negative", set: -1, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, err := sim.New(sim.Options{})
			if err != nil {
				t.Fatal(err)
			}
			a, err := New(Config{NodeID: "n1", AdvertiseAddr: "127.0.0.1", Runtimes: []runtime.Runtime{rt},
				Channel:  persysv1grpc.NewNodeChannelServiceClient(nil),
				Capacity: &persysv1.Resources{CpuMillis: 1000, MemoryBytes: 1 << 30}, MaxConcurrentCalls: tc.set})
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "MaxConcurrentCalls") {
					t.Fatalf("New: %v, want an error naming MaxConcurrentCalls", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			req, err := a.registration(context.Background(), "")
			if err != nil {
				t.Fatal(err)
			}
			if got := req.GetMaxConcurrentCalls(); got != tc.want {
				t.Fatalf("registration declares %d calls at once, want %d", got, tc.want)
			}
		})
	}
}
