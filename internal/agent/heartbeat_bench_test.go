package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// BenchmarkHeartbeatListing is what an agent does for each heartbeat on
// its side, apart from the call: list every runtime (stamped, zombies and
// health overlaid), settle the allocation record and tell the delta
// against the list the scheduler holds. Each iteration changes one status
// (a new revision, applied outside the timing), as a heartbeat of a busy node finds a few changed among
// many; a hollow node of the million holds 100.
func BenchmarkHeartbeatListing(b *testing.B) {
	for _, n := range []int{25, 100, 1000} {
		b.Run(fmt.Sprintf("workloads=%d", n), func(b *testing.B) {
			a, rt := simAgentOf(b, &persysv1.Resources{CpuMillis: 1 << 30, MemoryBytes: 1 << 50})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			spec := &persysv1.WorkloadSpec{Type: persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
				Container: &persysv1.ContainerSpec{Image: "x:1"}, Resources: &persysv1.Resources{CpuMillis: 10, MemoryBytes: 8 << 20}}
			names := make([]string, n)
			for i := range names {
				names[i] = fmt.Sprintf("w-%06d", i)
				if _, _, err := a.apply(ctx, rt, &persysv1.ApplyWorkloadRequest{Name: names[i], Uid: "u-" + names[i], Revision: 1, Spec: spec}); err != nil {
					b.Fatal(err)
				}
			}
			ws, err := a.listAll(ctx)
			if err != nil || len(ws) != n {
				b.Fatalf("list: %d (%v)", len(ws), err)
			}
			sent := acked(nil, digestWhole(ws), ws, nil, time.Time{})
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				name := names[i%n]
				if _, _, err := a.apply(ctx, rt, &persysv1.ApplyWorkloadRequest{Name: name, Uid: "u-" + name, Revision: uint64(2 + i/n), Spec: spec}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				mark := a.ledger.mark()
				ws, err := a.listAll(ctx)
				if err != nil {
					b.Fatal(err)
				}
				a.settleLedger(ws, mark)
				c := sent.delta(ws)
				if len(c.changed) != 1 || c.digest == 0 {
					b.Fatalf("delta after one restart: %d changed, digest %d", len(c.changed), c.digest)
				}
				sent.apply(c, nil, time.Time{})
			}
		})
	}
}
