package store_test

import (
	"errors"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

func TestServiceKeys(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)

	svc := &persysv1.Service{Name: "web", Uid: "u1", Spec: &persysv1.ServiceSpec{Replicas: 2}}
	rev, err := s.CreateService(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateService(ctx, svc); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	svc.Spec.Replicas = 3
	if _, err := s.UpdateService(ctx, svc, rev+100); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	rev, err = s.UpdateService(ctx, svc, rev)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := s.GetService(ctx, "web"); err != nil || got.GetSpec().GetReplicas() != 3 {
		t.Fatalf("get = %v, %v", got, err)
	}

	if err := s.PutServiceProgress(ctx, &persysv1.ServiceProgress{Name: "web", Uid: "other"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("progress of another uid: %v", err)
	}
	if err := s.PutServiceProgress(ctx, &persysv1.ServiceProgress{Name: "web", Uid: "u1", Ready: 2}); err != nil {
		t.Fatal(err)
	}
	if p, err := s.GetServiceProgress(ctx, "web"); err != nil || p.GetReady() != 2 {
		t.Fatalf("progress = %v, %v", p, err)
	}
	if all, err := s.ListServiceProgress(ctx); err != nil || len(all) != 1 || all[0].GetName() != "web" || all[0].GetReady() != 2 {
		t.Fatalf("list progress = %v, %v", all, err)
	}

	for n := uint64(1); n <= 6; n++ {
		if err := s.PutServiceRevision(ctx, &persysv1.ServiceRevision{Service: "web", Number: n}, 3, 2); err != nil {
			t.Fatal(err)
		}
	}
	revs, err := s.ListServiceRevisions(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	var nums []uint64
	for _, r := range revs {
		nums = append(nums, r.GetNumber())
	}
	if len(nums) != 4 || nums[0] != 2 || nums[1] != 4 || nums[3] != 6 {
		t.Fatalf("kept revisions %v, want [2 4 5 6] (3 newest and the protected 2)", nums)
	}

	list, _, err := s.ListServices(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("list = %v, %v", list, err)
	}
	if err := s.DeleteServiceKeys(ctx, "web", rev); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetServiceProgress(ctx, "web"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("progress after delete: %v", err)
	}
	if all, err := s.ListServiceProgress(ctx); err != nil || len(all) != 0 {
		t.Fatalf("list progress after delete = %v, %v", all, err)
	}
	if revs, _ := s.ListServiceRevisions(ctx, "web"); len(revs) != 0 {
		t.Fatalf("revisions after delete: %v", revs)
	}
}

func TestWatchServiceChanges(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)
	rev, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch := s.WatchServiceChanges(ctx, rev)
	if _, err := s.CreateWorkload(ctx, workload("plain", "u0")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateWorkload(ctx, workload("my-web-0123abcd-7", "u1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateService(ctx, &persysv1.Service{Name: "api", Uid: "u2"}); err != nil {
		t.Fatal(err)
	}
	// Replicas' changes reach the controller through the scheduler's
	// cache: the first change seen is the service's.
	if got := <-ch; got != "api" {
		t.Fatalf("first change names %q, want api", got)
	}
}

func TestServiceOfReplica(t *testing.T) {
	for name, want := range map[string]string{
		"web-0123abcd-0": "web", "a-b-c-deadbeef-12": "a-b-c", "web-0123abcd-": "", "web-0123abc-1": "",
		"web-0123ABCD-1": "", "-0123abcd-1": "", "web": "", "web-0123abcd-x": "",
	} {
		if got := store.ServiceOfReplica(name); got != want {
			t.Errorf("ServiceOfReplica(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestServiceReplicas: one read holds the service, its progress and its
// own replicas' keys (not those of a service whose name extends it), and
// the watch sends the revision of each change to them.
func TestServiceReplicas(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)
	if _, err := s.ReadServiceReplicas(ctx, "web"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing service: %v", err)
	}
	if _, err := s.CreateService(ctx, &persysv1.Service{Name: "web", Uid: "u1"}); err != nil {
		t.Fatal(err)
	}
	rev, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch := s.WatchServiceReplicas(ctx, "web", rev)
	for _, name := range []string{"web-0123abcd-0", "web-x-0123abcd-0", "webby"} {
		if _, err := s.CreateWorkload(ctx, workload(name, "u-"+name)); err != nil {
			t.Fatal(err)
		}
	}
	if got := <-ch; got <= rev {
		t.Fatalf("watch sent revision %d, want one after %d", got, rev)
	}
	if err := s.PutServiceProgress(ctx, &persysv1.ServiceProgress{Name: "web", Uid: "u1",
		Draining: []*persysv1.ServiceEndpointDrain{{Replica: "web-0123abcd-0"}}}); err != nil {
		t.Fatal(err)
	}
	r, err := s.ReadServiceReplicas(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Workloads) != 1 || r.Workloads["web-0123abcd-0"] == nil || r.Service.GetUid() != "u1" ||
		len(r.Progress.GetDraining()) != 1 || r.Revision <= rev {
		t.Fatalf("read %+v, want web's one replica, its progress and a newer revision", r)
	}
	// Older changes (web-x's replica, under the same prefix) may come
	// first; the progress write's revision must come.
	for got := int64(0); got < r.Revision; {
		select {
		case got = <-ch:
		case <-ctx.Done():
			t.Fatalf("no change at or after %d sent for the progress write (last %d)", r.Revision, got)
		}
	}
}
