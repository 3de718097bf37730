package fedwork_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedstore"
	"github.com/persys-dev/compute/internal/federation/fedtest"
	"github.com/persys-dev/compute/internal/federation/fedwork"
	"github.com/persys-dev/compute/internal/gateway/httperr"
	"github.com/persys-dev/compute/internal/testutil/eventually"
)

// manifest asks for 2 CPUs: a member's sim node (4 CPUs, 80% usable)
// fits one such workload and not two.
func manifest(name, placement string) []byte {
	return fmt.Appendf(nil, `apiVersion: persys/v1
kind: Workload
metadata:
  name: %s
spec:
  type: container
  desiredState: running
  container:
    image: sim/app:1
  resources:
    cpu: 2000m
    memory: 64Mi
%s`, name, placement)
}

const both = "placement:\n  clusters: [a, b]\n  offload: true\n"

type env struct {
	a, b *fedtest.Member
	fed  *fedtest.Federation
	svc  *fedwork.Service
}

func start(t *testing.T) *env {
	t.Helper()
	e := &env{a: fedtest.StartMember(t), b: fedtest.StartMember(t), fed: fedtest.StartFederation(t, 15*time.Second)}
	for name, m := range map[string]*fedtest.Member{"a": e.a, "b": e.b} {
		if _, err := e.fed.Admin.JoinCluster(context.Background(), m.Join(t, name)); err != nil {
			t.Fatal(err)
		}
	}
	e.svc = fedwork.New(fedwork.Config{Store: e.fed.Store})
	t.Cleanup(e.svc.Close)
	return e
}

// memberState is the workload's state at a member, "" when absent.
func memberState(t *testing.T, m *fedtest.Member, name string) string {
	t.Helper()
	v, err := m.Cluster.Client(t, m.Gateway).GetWorkload(context.Background(), name, false)
	if client.IsNotFound(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return v.GetStatus().GetState().String()
}

// TestOffload places a workload on its preferred cluster, offloads the
// next one that does not fit there to the second cluster with the reason
// recorded, and deletes it at its member.
func TestOffload(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	resp, err := e.svc.Apply(ctx, manifest("w1", both))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetResult() != "created" || resp.GetWorkload().GetWorkload().GetLabels()[fedapi.LabelCluster] != "a" {
		t.Fatalf("apply w1 = %v", resp)
	}
	// The apply itself records that a took the decision.
	if w, _, err := e.fed.Store.GetWorkload(ctx, "w1"); err != nil || w.Decision.Cluster != "a" || !w.Sent.Same(w.Decision) {
		t.Fatalf("w1 after apply: %+v, %v; want decided for a and sent", w, err)
	}
	running := persysv1.ActualState_ACTUAL_STATE_RUNNING.String()
	eventually.Eventually(t, "w1 running on a", 30*time.Second, func() (bool, string) {
		s := memberState(t, e.a, "w1")
		return s == running, s
	})
	if again, err := e.svc.Apply(ctx, manifest("w1", both)); err != nil || again.GetResult() != "unchanged" {
		t.Fatalf("second apply of w1: %v, %v; want unchanged", again, err)
	}

	if _, err := e.svc.Apply(ctx, manifest("w2", both)); err != nil {
		t.Fatal(err)
	}
	eventually.Eventually(t, "w2 offloaded to b and running there", 30*time.Second, func() (bool, string) {
		if err := e.svc.Reconcile(ctx); err != nil {
			return false, err.Error()
		}
		w, _, err := e.fed.Store.GetWorkload(ctx, "w2")
		if err != nil {
			return false, err.Error()
		}
		s := memberState(t, e.b, "w2")
		return w.Decision.Cluster == "b" && s == running && len(w.Stale) == 0, fmt.Sprintf("decision %+v, at b %s", w.Decision, s)
	})
	w, _, _ := e.fed.Store.GetWorkload(ctx, "w2")
	if !strings.Contains(w.Decision.Reason, "offloaded from a") || !strings.Contains(w.Decision.Reason, "no node fits") ||
		len(w.Refusals) != 1 || w.Refusals[0].Cluster != "a" || len(w.History) != 2 || !w.Sent.Same(w.Decision) {
		t.Fatalf("w2 after offload: %+v", w)
	}
	if s := memberState(t, e.a, "w2"); s != "" {
		t.Fatalf("w2 still at a (%s) after it was offloaded", s)
	}
	if s := memberState(t, e.a, "w1"); s != running {
		t.Fatalf("w1 at a is %s, want it untouched", s)
	}
	checkViews(t, e.svc)

	if err := e.svc.Delete(ctx, "w2"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.fed.Store.GetWorkload(ctx, "w2"); !errors.Is(err, fedstore.ErrNotFound) {
		t.Fatalf("w2 still stored: %v", err)
	}
	eventually.Eventually(t, "w2 gone from b", 30*time.Second, func() (bool, string) {
		s := memberState(t, e.b, "w2")
		return s == "", s
	})
}

// TestApplyRefused: bad placements are refused naming the field, and
// nothing is stored.
func TestApplyRefused(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	tests := []struct {
		name, body, field string
	}{
		{"no placement", string(manifest("x", "")), "placement"},
		{"unknown cluster", string(manifest("x", "placement:\n  clusters: [a, c]\n")), "placement.clusters[1]"},
		{"unknown placement field", string(manifest("x", "placement:\n  clusters: [a]\n  weights: 1\n")), "placement"},
		{"other strategy", string(manifest("x", "placement:\n  clusters: [a]\n  strategy: spread\n")), "placement.strategy"},
		{"selector matching no member", string(manifest("x", "placement:\n  clusterSelector: {region: mars}\n")), "placement.clusterSelector"},
		{"weights of a workload", string(manifest("x", "placement:\n  clusters: [a]\n  weights: {a: 1}\n")), "placement.weights"},
		{"invalid workload", strings.Replace(string(manifest("x", both)), "cpu: 2000m", "cpu: lots", 1), "spec.resources.cpu"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.Apply(ctx, []byte(tc.body))
			var he *httperr.Error
			if !errors.As(err, &he) || len(he.Fields) == 0 || he.Fields[0].Field != tc.field {
				t.Fatalf("apply: %v, want a field error naming %s", err, tc.field)
			}
			if ws, _, err := e.fed.Store.ListWorkloads(ctx); err != nil || len(ws) != 0 {
				t.Fatalf("stored after a refused apply: %+v, %v", ws, err)
			}
		})
	}
}

// TestSelector places a workload on the member its cluster selector
// matches, by the labels the member was given.
func TestSelector(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	if _, err := e.fed.Store.UpdateMemberLabels(ctx, "b", map[string]string{"region": "us"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.fed.Store.UpdateMemberLabels(ctx, "a", map[string]string{"region": "eu"}, nil); err != nil {
		t.Fatal(err)
	}
	resp, err := e.svc.Apply(ctx, manifest("w1", "placement:\n  clusterSelector: {region: us}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetWorkload().GetWorkload().GetLabels()[fedapi.LabelCluster]; got != "b" {
		t.Fatalf("w1 placed on %q, want b (the only region=us member)", got)
	}
	w, _, err := e.fed.Store.GetWorkload(ctx, "w1")
	if err != nil || w.Placement.ClusterSelector["region"] != "us" || len(w.Placement.Clusters) != 0 {
		t.Fatalf("stored placement %+v, %v; want the selector as given", w.Placement, err)
	}
}

// TestDecisionBeforeSend: with the chosen member's scheduler down, the
// decision is stored anyway and sent once the member is back.
func TestDecisionBeforeSend(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	e.a.Cluster.Stop(0)
	resp, err := e.svc.Apply(ctx, manifest("w1", both))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetWorkload().GetStatus().GetState() != persysv1.ActualState_ACTUAL_STATE_UNKNOWN {
		t.Fatalf("apply to a member that cannot take it: %v", resp)
	}
	w, _, err := e.fed.Store.GetWorkload(ctx, "w1")
	if err != nil || w.Decision.Cluster != "a" || w.Decision.Revision != 1 || w.Sent.Cluster != "" {
		t.Fatalf("stored %+v, %v; want decided for a, not sent", w, err)
	}
	e.a.Cluster.Restart(t)
	eventually.Eventually(t, "w1 sent to a", 60*time.Second, func() (bool, string) {
		if err := e.svc.Reconcile(ctx); err != nil {
			return false, err.Error()
		}
		w, _, _ := e.fed.Store.GetWorkload(ctx, "w1")
		return w.Sent.Same(w.Decision) && memberState(t, e.a, "w1") != "", fmt.Sprintf("%+v", w.Sent)
	})
}

// TestFailover: a workload whose member is lost past the failover grace
// moves to the next ready cluster; when the member is back, the copy it
// still holds is deleted, so that one member holds the workload.
func TestFailover(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	placement := "placement:\n  clusters: [a, b]\n  failover:\n    grace: 5s\n"
	if _, err := e.svc.Apply(ctx, manifest("w1", placement)); err != nil {
		t.Fatal(err)
	}
	running := persysv1.ActualState_ACTUAL_STATE_RUNNING.String()
	eventually.Eventually(t, "w1 running on a", 30*time.Second, func() (bool, string) {
		s := memberState(t, e.a, "w1")
		return s == running, s
	})
	// a's scheduler stops; the federation has not reached a for a minute
	// (the health record is what the monitor would have written).
	e.a.Cluster.Stop(0)
	a, err := e.fed.Admin.GetCluster(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	lost := a.Health
	lost.State, lost.Reachable, lost.LastContact, lost.Since = fedapi.StateLost, false, time.Now().Add(-time.Minute), time.Now()
	if err := e.fed.Store.PutHealth(ctx, "a", lost); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	w, _, err := e.fed.Store.GetWorkload(ctx, "w1")
	if err != nil || w.Decision.Cluster != "b" || !w.Sent.Same(w.Decision) || !slices.Equal(w.Stale, []string{"a"}) || !strings.Contains(w.Decision.Reason, "failover from a") {
		t.Fatalf("after a was lost: %+v, %v", w, err)
	}
	eventually.Eventually(t, "w1 running on b", 30*time.Second, func() (bool, string) {
		s := memberState(t, e.b, "w1")
		return s == running, s
	})

	// a is back: its copy goes, and w1 stays on b.
	e.a.Cluster.Restart(t)
	back := lost
	back.State, back.Reachable, back.LastContact = fedapi.StateReady, true, time.Now()
	if err := e.fed.Store.PutHealth(ctx, "a", back); err != nil {
		t.Fatal(err)
	}
	eventually.Eventually(t, "the stale copy on a deleted", 60*time.Second, func() (bool, string) {
		if err := e.svc.Reconcile(ctx); err != nil {
			return false, err.Error()
		}
		w, _, _ := e.fed.Store.GetWorkload(ctx, "w1")
		s := memberState(t, e.a, "w1")
		return len(w.Stale) == 0 && (s == "" || s == persysv1.ActualState_ACTUAL_STATE_DELETING.String()), fmt.Sprintf("stale %v, at a %q", w.Stale, s)
	})
	if w, _, _ := e.fed.Store.GetWorkload(ctx, "w1"); w.Decision.Cluster != "b" {
		t.Fatalf("w1 moved back to %s", w.Decision.Cluster)
	}
}

// checkViews: the list shows w1 on a and w2 on b; w2's events start with
// the federation's decisions, the second saying why it moved.
func checkViews(t *testing.T, svc *fedwork.Service) {
	t.Helper()
	ctx := context.Background()
	list, err := svc.List(ctx)
	if err != nil || len(list.GetWorkloads()) != 2 {
		t.Fatalf("list = %v, %v", list, err)
	}
	for _, v := range list.GetWorkloads() {
		want := map[string]string{"w1": "a", "w2": "b"}[v.GetWorkload().GetName()]
		if got := v.GetWorkload().GetLabels()[fedapi.LabelCluster]; got != want {
			t.Fatalf("%s shown on cluster %q, want %q", v.GetWorkload().GetName(), got, want)
		}
	}
	v, err := svc.Get(ctx, "w2", true)
	if err != nil || len(v.GetEvents()) < 2 || !strings.Contains(v.GetEvents()[1].GetMessage(), "offloaded from a") {
		t.Fatalf("w2 with events: %v, %v", v, err)
	}
}

// TestDeleteWhileTheLoopWrites: a delete whose record another writer
// changes between the delete's read and its last write (the reconcile
// loop recording a send, say), or deletes first, still deletes, and says
// so: no "changed since it was read".
func TestDeleteWhileTheLoopWrites(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	for _, name := range []string{"d1", "d2"} {
		if _, err := e.svc.Apply(ctx, manifest(name, "placement:\n  clusters: [a, b]\n")); err != nil {
			t.Fatal(err)
		}
	}
	var other []error
	e.svc.SetBeforeRecordDelete(func(name string) {
		e.svc.SetBeforeRecordDelete(nil) // once
		w, rev, err := e.fed.Store.GetWorkload(ctx, name)
		if err == nil {
			_, err = e.fed.Store.PutWorkload(ctx, w, rev)
		}
		other = append(other, err)
	})
	if err := e.svc.Delete(ctx, "d1"); err != nil {
		t.Fatalf("delete d1 after another write: %v", err)
	}
	e.svc.SetBeforeRecordDelete(func(name string) {
		e.svc.SetBeforeRecordDelete(nil)
		w, rev, err := e.fed.Store.GetWorkload(ctx, name)
		if err == nil {
			err = e.fed.Store.DeleteWorkload(ctx, w.Name, rev)
		}
		other = append(other, err)
	})
	if err := e.svc.Delete(ctx, "d2"); err != nil {
		t.Fatalf("delete d2 deleted meanwhile: %v", err)
	}
	if len(other) != 2 || other[0] != nil || other[1] != nil {
		t.Fatalf("the other writes: %v; want two that committed", other)
	}
	for _, name := range []string{"d1", "d2"} {
		if _, _, err := e.fed.Store.GetWorkload(ctx, name); !errors.Is(err, fedstore.ErrNotFound) {
			t.Errorf("%s still stored: %v", name, err)
		}
	}
}
