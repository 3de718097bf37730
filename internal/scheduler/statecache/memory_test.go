package statecache

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/placement"
	"github.com/persys-dev/compute/internal/reportdigest"
)

// wire returns a copy of m as a gRPC or etcd read gives it: decoded from
// its bytes, every string its own allocation.
func wire[M proto.Message](tb testing.TB, m M) M {
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	out := m.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(b, out); err != nil {
		tb.Fatal(err)
	}
	return out.(M)
}

// benchNodes registers n alive container nodes with room for 100,000
// bench workloads each.
func benchNodes(c *Cache, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%05d", i)
		c.NodeChanged(ids[i], &persysv1.Node{Id: ids[i], Address: ids[i] + ":7443", Capabilities: &persysv1.NodeCapabilities{
			Runtimes: []persysv1.WorkloadType{persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER},
			Capacity: &persysv1.Resources{CpuMillis: 1 << 40, MemoryBytes: 1 << 50, DiskBytes: 1 << 50}}}, 1, false)
		c.SetAlive(ids[i], true)
		c.StoreReports(ids[i], nil, 0)
	}
	return ids
}

// placeRunning fills c with workload i as the scheduler holds a placed,
// RUNNING one of the bench (internal/bench benchSpec): the spec an apply
// wrote, the placement's assignment and SCHEDULED status, the apply's
// attempt, the agent's answer and then its heartbeat's report, the
// RUNNING status the scheduler wrote from them, and the attempt forgotten
// once the state held. It returns the node's id.
func placeRunning(tb testing.TB, c *Cache, i int, rev *int64) string {
	name := fmt.Sprintf("bench-%07d", i)
	now := timestamppb.New(time.Unix(1_800_000_000, int64(i)))
	w := wire(tb, &persysv1.Workload{Name: name, Uid: fmt.Sprintf("%032x", uint64(i)*2654435761), Revision: 1,
		CreatedAt: now, UpdatedAt: now, AppliedBy: "admin", AppliedRole: "admin",
		Spec: &persysv1.WorkloadSpec{
			Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
			DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
			Resources:    &persysv1.Resources{CpuMillis: 10, MemoryBytes: 8 << 20},
			Container:    &persysv1.ContainerSpec{Image: "registry.local/bench/pause:3.9", RestartPolicy: "no"},
		}})
	*rev++
	c.WorkloadWritten(w, *rev)
	dec, _, _ := c.Choose(name, w.GetSpec())
	if !dec.Placed() {
		tb.Fatalf("%s: not placed: %+v", name, dec)
	}
	a := &persysv1.Assignment{Name: name, Uid: w.GetUid(), NodeId: dec.NodeID, Revision: w.GetRevision(),
		PlacedAt: now, Cause: "new", Decision: &persysv1.PlacementDecision{NodeId: dec.NodeID, Score: dec.Score,
			FeasibleNodes: int32(dec.Feasible), TotalNodes: int32(dec.Total), Strategy: dec.Strategy.String()}}
	st := &persysv1.WorkloadStatus{Name: name, Uid: w.GetUid(), State: persysv1.ActualState_ACTUAL_STATE_SCHEDULED,
		NodeId: dec.NodeID, Revision: w.GetRevision(), UpdatedAt: now,
		Message: fmt.Sprintf("placed on %s (%d of %d nodes feasible)", dec.NodeID, dec.Feasible, dec.Total)}
	*rev++
	c.Placed(Placement{Name: name, WorkloadRev: *rev - 1, Rev: *rev, Assignment: a, Status: st})

	// The apply: one attempt, which reached the desired state.
	c.Read(name)
	c.BeginAttempt(name)
	c.MarkReached(name)
	report := &persysv1.WorkloadStatus{Name: name, Uid: w.GetUid(), Revision: 1, State: persysv1.ActualState_ACTUAL_STATE_RUNNING,
		RuntimeId: fmt.Sprintf("sim-%016x", uint64(i)*0x9e3779b97f4a7c15), UpdatedAt: now, NodeId: dec.NodeID,
		Ready: true, Health: persysv1.HealthState_HEALTH_STATE_HEALTHY}
	c.SetReport(dec.NodeID, name, wire(tb, report))
	r := c.Report(dec.NodeID, name)
	run := &persysv1.WorkloadStatus{Name: name, Uid: w.GetUid(), State: persysv1.ActualState_ACTUAL_STATE_RUNNING,
		Message: "running", NodeId: dec.NodeID, Revision: w.GetRevision(), RuntimeId: r.GetRuntimeId(),
		RestartCount: r.GetRestartCount(), Ready: r.GetReady(), Health: r.GetHealth(), UpdatedAt: now}
	*rev++
	c.StatusWritten(name, run, *rev)
	// The next heartbeat's delta carries the report, decoded afresh.
	c.ApplyDelta(dec.NodeID, []*persysv1.WorkloadStatus{wire(tb, report)}, nil, c.digestWith(dec.NodeID, wire(tb, report)))
	// It held for StableAfter: the attempt is forgotten.
	c.ResetAttempts(name)
	return dec.NodeID
}

// digestWith is the digest of node id's list with st in it, as the agent
// computes it.
func (c *Cache) digestWith(id string, st *persysv1.WorkloadStatus) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return digestOf(c.nodes[id], st)
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkCacheMemoryPerWorkload fills a cache of 1,000 nodes with b.N
// placed, RUNNING bench workloads and reports the live heap each costs
// (the nodes' own cost is measured before the fill and left out).
func BenchmarkCacheMemoryPerWorkload(b *testing.B) {
	c := New(Config{Strategy: placement.Spread})
	benchNodes(c, 1000)
	var rev int64 = 10
	before := heapInUse()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		placeRunning(b, c, i, &rev)
	}
	b.StopTimer()
	after := heapInUse()
	b.ReportMetric(float64(int64(after)-int64(before))/float64(b.N), "bytes/workload")
	runtime.KeepAlive(c)
}

// BenchmarkReconcileReads is what one reconcile of a placed workload reads
// from the cache: its reading, its node's report and its status.
func BenchmarkReconcileReads(b *testing.B) {
	c := New(Config{Strategy: placement.Spread})
	benchNodes(c, 100)
	var rev int64 = 10
	const n = 10000
	for i := 0; i < n; i++ {
		placeRunning(b, c, i, &rev)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("bench-%07d", i%n)
		r, ok := c.Read(name)
		if !ok || r.Report == nil {
			b.Fatalf("%s: no reading or report", name)
		}
		if c.Report(r.Assignment.GetNodeId(), name) == nil {
			b.Fatal("no report")
		}
		if st, _ := c.Status(name); st == nil {
			b.Fatal("no status")
		}
	}
}

// A placed, RUNNING bench workload reads back as the scheduler wrote it:
// the measured fill is the real one.
func TestPlaceRunningFillsEveryKey(t *testing.T) {
	c := New(Config{Strategy: placement.Spread})
	benchNodes(c, 3)
	var rev int64 = 10
	id := placeRunning(t, c, 7, &rev)
	r, ok := c.Read("bench-0000007")
	if !ok || r.Assignment.GetNodeId() != id || r.Workload.GetSpec().GetContainer().GetImage() == "" {
		t.Fatalf("reading %+v", r)
	}
	if r.Report.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || r.Report.GetRuntimeId() == "" || r.ReportSince.IsZero() {
		t.Fatalf("report %v since %v", r.Report, r.ReportSince)
	}
	if st, _ := c.Status("bench-0000007"); st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("status %v", st)
	}
	if _, ok := c.DigestOrphans(id, c.digestWith(id, r.Report)); !ok {
		t.Fatal("the list held is not the agent's")
	}
}

// digestOf is the agent's digest of ne's list with st in it.
func digestOf(ne *node, st *persysv1.WorkloadStatus) uint64 {
	list := []*persysv1.WorkloadStatus{st}
	for name, r := range ne.reports {
		if name != st.GetName() {
			list = append(list, r.status())
		}
	}
	return reportdigest.Of(list)
}

// BenchmarkPlace is the cache's part of one placement on 1,000 nodes: the
// spec written, a node chosen and held, the commit recorded.
func BenchmarkPlace(b *testing.B) {
	c := New(Config{Strategy: placement.Spread})
	benchNodes(c, 1000)
	ws := make([]*persysv1.Workload, b.N)
	for i := range ws {
		ws[i] = &persysv1.Workload{Name: fmt.Sprintf("bench-%07d", i), Uid: fmt.Sprintf("%032x", i), Revision: 1,
			Spec: &persysv1.WorkloadSpec{Type: persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
				Resources: &persysv1.Resources{CpuMillis: 10, MemoryBytes: 8 << 20}}}
	}
	var rev int64 = 10
	b.ResetTimer()
	for _, w := range ws {
		rev++
		c.WorkloadWritten(w, rev)
		dec, _, _ := c.Choose(w.GetName(), w.GetSpec())
		rev++
		c.Placed(Placement{Name: w.GetName(), WorkloadRev: rev - 1, Rev: rev,
			Assignment: &persysv1.Assignment{Name: w.GetName(), Uid: w.GetUid(), NodeId: dec.NodeID, Revision: 1},
			Status:     &persysv1.WorkloadStatus{Name: w.GetName(), State: persysv1.ActualState_ACTUAL_STATE_SCHEDULED, NodeId: dec.NodeID}})
	}
}

// BenchmarkHeartbeatDelta is one heartbeat's change of one workload on a
// node that runs 100: the delta applied and checked against the agent's
// digest.
func BenchmarkHeartbeatDelta(b *testing.B) {
	c := New(Config{Strategy: placement.Spread})
	benchNodes(c, 1)
	var rev int64 = 10
	for i := 0; i < 100; i++ {
		placeRunning(b, c, i, &rev)
	}
	r := c.Report("node-00000", "bench-0000007")
	flip := [2]*persysv1.WorkloadStatus{proto.Clone(r).(*persysv1.WorkloadStatus), proto.Clone(r).(*persysv1.WorkloadStatus)}
	flip[1].RestartCount = 1
	digests := [2]uint64{}
	for k, st := range flip {
		digests[k] = c.digestWith("node-00000", st)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := (i + 1) % 2
		if _, ok := c.ApplyDelta("node-00000", []*persysv1.WorkloadStatus{flip[k]}, nil, digests[k]); !ok {
			b.Fatal("delta refused")
		}
	}
}
