package scheduler

import (
	"context"
	"fmt"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/store/storetest"
)

// Churn through a few reused names: every deleted workload leaves the cache
// and etcd, even when the watch echo and our own write-back race (a deleted
// workload once came back into the cache that way and was never removed).
func TestApplyDeleteChurnLeavesNothing(t *testing.T) {
	st, _ := storetest.New(t)
	s, err := New(Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	ready := time.Now().Add(30 * time.Second)
	for s.Ready() != nil {
		if time.Now().After(ready) {
			t.Fatalf("scheduler not ready after 30s: %v", s.Ready())
		}
		time.Sleep(10 * time.Millisecond)
	}
	svc := s.Service()
	// Calls made in process carry the identity UnaryAuth would have set.
	ctx = principal.WithIdentity(ctx, pki.Identity{CommonName: "admin", Role: pki.RoleAdmin})
	spec := &persysv1.WorkloadSpec{Type: 1, DesiredState: 1, Resources: &persysv1.Resources{CpuMillis: 10, MemoryBytes: 8 << 20},
		Container: &persysv1.ContainerSpec{Image: "x:1", RestartPolicy: "no"}}
	for i := 1; i <= 1500; i++ {
		name := fmt.Sprintf("churn-%d", i%8)
		if _, err := svc.ApplyWorkload(ctx, &persysv1.ApplyRequest{Name: name, Spec: spec}); err != nil {
			t.Fatal(i, err)
		}
		if _, err := svc.DeleteWorkload(ctx, &persysv1.DeleteRequest{Name: name}); err != nil {
			t.Fatal(i, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := svc.GetWorkload(ctx, &persysv1.GetWorkloadRequest{Name: name}); err != nil {
				break
			}
			if time.Now().After(deadline) {
				e := s.cache.WorkloadView(name)
				t.Fatalf("cycle %d: %s stuck: deleting=%v uid=%s assign=%v status=%v queued=%v processing=%v timer=%v in %v",
					i, name, e.GetWorkload().GetDeleting(), e.GetWorkload().GetUid(), e.GetAssignment(), e.GetStatus().GetState(), s.queue.queued[name], s.queue.processing[name], s.queue.timers[name] != nil, time.Until(s.queue.timers[name].at))
			}
			time.Sleep(time.Millisecond)
		}
	}
	if _, left, err := st.CountKeys(ctx); err != nil || left != 0 {
		t.Fatalf("keys left in etcd besides events: %d (%v)", left, err)
	}
}
