package fedstore_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedstore"
	"github.com/persys-dev/compute/internal/store/storetest"
)

func newStore(t *testing.T) *fedstore.Store {
	t.Helper()
	cli, err := storetest.Embedded(t).Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return fedstore.New(cli, "", 0)
}

func TestMembers(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	joined := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := fedstore.Member{Name: "a", Gateway: "https://127.0.0.1:1", CA: "ca", Cert: "cert", Key: "key", JoinedAt: joined}
	if err := st.CreateMember(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateMember(ctx, fedstore.Member{Name: "a", Gateway: "https://other"}); !errors.Is(err, fedstore.ErrExists) {
		t.Fatalf("second create of a: %v, want ErrExists", err)
	}
	got, err := st.GetMember(ctx, "a")
	if err != nil || !reflect.DeepEqual(got, a) {
		t.Fatalf("get a = %+v, %v; want %+v (the second create must change nothing)", got, err, a)
	}
	if err := st.CreateMember(ctx, fedstore.Member{Name: "b", JoinedAt: joined}); err != nil {
		t.Fatal(err)
	}
	list, err := st.ListMembers(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "a" || list[1].Name != "b" {
		t.Fatalf("list = %+v, %v; want a, b", list, err)
	}
	if _, err := st.GetMember(ctx, "c"); !errors.Is(err, fedstore.ErrNotFound) {
		t.Fatalf("get c: %v, want ErrNotFound", err)
	}

	if err := st.PutHealth(ctx, "a", fedapi.Health{State: fedapi.StateReady, NodesTotal: 3}); err != nil {
		t.Fatal(err)
	}
	hs, err := st.Healths(ctx)
	if err != nil || hs["a"].NodesTotal != 3 || len(hs) != 1 {
		t.Fatalf("healths = %+v, %v", hs, err)
	}
	m, err := st.UpdateMemberLabels(ctx, "a", map[string]string{"region": "eu", "tier": "gold"}, nil)
	if err != nil || m.Labels["region"] != "eu" {
		t.Fatalf("labels of a = %+v, %v", m.Labels, err)
	}
	if m, err = st.UpdateMemberLabels(ctx, "a", map[string]string{"region": "us"}, []string{"tier"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.GetMember(ctx, "a"); len(got.Labels) != 1 || got.Labels["region"] != "us" || got.Cert != "cert" {
		t.Fatalf("member a after relabel = %+v, want region=us only and the rest unchanged", got)
	}
	if _, err := st.UpdateMemberLabels(ctx, "zz", map[string]string{"x": "y"}, nil); !errors.Is(err, fedstore.ErrNotFound) {
		t.Fatalf("labels of an unknown member: %v, want ErrNotFound", err)
	}
	if err := st.DeleteMember(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMember(ctx, "a"); !errors.Is(err, fedstore.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	// A probe that finishes after the leave must not bring the member back.
	if err := st.PutHealth(ctx, "a", fedapi.Health{State: fedapi.StateReady}); !errors.Is(err, fedstore.ErrNotFound) {
		t.Fatalf("health of a removed member: %v, want ErrNotFound", err)
	}
	if hs, _ := st.Healths(ctx); len(hs) != 0 {
		t.Fatalf("healths after delete = %+v, want none", hs)
	}
	if list, _ := st.ListMembers(ctx); len(list) != 1 || list[0].Name != "b" {
		t.Fatalf("list after delete = %+v, want b", list)
	}
}

func TestEvents(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, c := range []string{"a", "b", "a", "a"} {
		if err := st.AddEvent(ctx, fedapi.Event{Time: t0.Add(time.Duration(i) * time.Second), Type: fedapi.EventJoined, Cluster: c, Message: c}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := st.ListEvents(ctx, "", 0)
	if err != nil || len(all) != 4 {
		t.Fatalf("all events = %d, %v; want 4", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Time.Before(all[i-1].Time) {
			t.Fatalf("events out of order: %v", all)
		}
	}
	ofA, err := st.ListEvents(ctx, "a", 2)
	if err != nil || len(ofA) != 2 || !ofA[1].Time.Equal(t0.Add(3*time.Second)) || ofA[0].Cluster != "a" {
		t.Fatalf("newest two of a = %+v, %v", ofA, err)
	}
}
