package fedsvc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedplace"
	"github.com/persys-dev/compute/internal/federation/fedstore"
	"github.com/persys-dev/compute/internal/federation/fedsvc"
	"github.com/persys-dev/compute/internal/federation/fedtest"
	"github.com/persys-dev/compute/internal/federation/fedwork"
	"github.com/persys-dev/compute/internal/gateway/httperr"
	"github.com/persys-dev/compute/internal/testutil/eventually"
)

func service(name string, replicas int, placement string) []byte {
	return fmt.Appendf(nil, `apiVersion: persys/v1
kind: Service
metadata:
  name: %s
spec:
  replicas: %d
  template:
    type: container
    desiredState: running
    container:
      image: sim/app:1
    resources:
      cpu: 100m
      memory: 16Mi
%s`, name, replicas, placement)
}

type env struct {
	members map[string]*fedtest.Member
	fed     *fedtest.Federation
	ctl     *fedsvc.Controller
	reg     *prometheus.Registry
}

func start(t *testing.T) *env {
	t.Helper()
	e := &env{members: map[string]*fedtest.Member{}, fed: fedtest.StartFederation(t, 15*time.Second)}
	for _, name := range []string{"a", "b", "c"} {
		m := fedtest.StartMember(t)
		e.members[name] = m
		req := m.Join(t, name)
		req.Labels = map[string]string{"region": map[string]string{"a": "eu", "b": "eu", "c": "us"}[name]}
		if _, err := e.fed.Admin.JoinCluster(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	e.reg = prometheus.NewRegistry()
	e.ctl = fedsvc.New(fedsvc.Config{Store: e.fed.Store, Lookup: fedwork.Lookup(e.fed.Store), Registry: e.reg})
	t.Cleanup(e.ctl.Close)
	return e
}

// replicasAt is the service's replicas as the member's service says, -1
// when the member has no such service.
func (e *env) replicasAt(t *testing.T, cluster, name string) int {
	t.Helper()
	m := e.members[cluster]
	v, err := m.Cluster.Client(t, m.Gateway).GetService(context.Background(), name, false)
	if client.IsNotFound(err) {
		return -1
	}
	if err != nil {
		t.Fatal(err)
	}
	if v.GetService().GetDeleting() {
		return -1
	}
	return int(v.GetService().GetSpec().GetReplicas())
}

func (e *env) shares(t *testing.T, name string) string {
	t.Helper()
	var parts []string
	for _, c := range []string{"a", "b", "c"} {
		if n := e.replicasAt(t, c, name); n >= 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", c, n))
		}
	}
	return strings.Join(parts, ",")
}

// divisions reads persys_federation_service_divisions_total by cause.
func (e *env) divisions(t *testing.T) map[string]float64 {
	t.Helper()
	fams, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "persys_federation_service_divisions_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "cause" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

func (e *env) setHealth(t *testing.T, cluster string, state fedapi.State, lastContact time.Time) {
	t.Helper()
	c, err := e.fed.Admin.GetCluster(context.Background(), cluster)
	if err != nil {
		t.Fatal(err)
	}
	h := c.Health
	h.State, h.Reachable, h.LastContact, h.Since = state, state == fedapi.StateReady, lastContact, time.Now()
	if err := e.fed.Store.PutHealth(context.Background(), cluster, h); err != nil {
		t.Fatal(err)
	}
}

// TestSpreadFailover divides 6 replicas 2/2/2, moves a lost member's
// share to the others past the grace, and gives it back (the others
// shrinking to theirs) once the member is ready again.
func TestSpreadFailover(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	body := service("web", 6, "placement:\n  clusters: [a, b, c]\n  failover:\n    grace: 5s\n")
	resp, err := e.ctl.Apply(ctx, body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetResult() != "created" || resp.GetService().GetService().GetLabels()[fedapi.LabelCluster] != "a=2,b=2,c=2" || resp.GetService().GetService().GetSpec().GetReplicas() != 6 {
		t.Fatalf("apply = %v", resp)
	}
	if got := e.shares(t, "web"); got != "a=2,b=2,c=2" {
		t.Fatalf("member services %s, want a=2,b=2,c=2", got)
	}
	v, _, err := e.fed.Store.GetService(ctx, "web")
	if err != nil || v.Decision.Seq != 1 || len(v.Sent) != 3 {
		t.Fatalf("stored %+v, %v; want decision 1 taken by the three", v, err)
	}
	if again, err := e.ctl.Apply(ctx, body); err != nil || again.GetResult() != "unchanged" {
		t.Fatalf("second apply: %v, %v; want unchanged", again, err)
	}
	eventually.Eventually(t, "6 replicas ready over the three", 60*time.Second, func() (bool, string) {
		got, err := e.ctl.Get(ctx, "web", false)
		if err != nil {
			return false, err.Error()
		}
		return got.GetProgress().GetReady() == 6, got.GetProgress().GetMessage()
	})

	// b's scheduler stops and the federation has not reached it for a
	// minute: its share goes to a and c.
	e.members["b"].Cluster.Stop(0)
	e.setHealth(t, "b", fedapi.StateLost, time.Now().Add(-time.Minute))
	if err := e.ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	v, _, _ = e.fed.Store.GetService(ctx, "web")
	if fedplace.FormatShares(v.Decision.Shares) != "a=3,c=3" || !strings.Contains(v.Decision.Reason, "b is Lost past the failover grace") || v.Sent["b"] != 1 {
		t.Fatalf("after b was lost: %+v", v)
	}
	if a, c := e.replicasAt(t, "a", "web"), e.replicasAt(t, "c", "web"); a != 3 || c != 3 {
		t.Fatalf("a has %d and c %d replicas, want 3 and 3", a, c)
	}

	// b is back: its share returns, a and c shrink to theirs.
	e.members["b"].Cluster.Restart(t)
	e.setHealth(t, "b", fedapi.StateReady, time.Now())
	eventually.Eventually(t, "the division back to 2/2/2", 60*time.Second, func() (bool, string) {
		if err := e.ctl.Reconcile(ctx); err != nil {
			return false, err.Error()
		}
		got := e.shares(t, "web")
		return got == "a=2,b=2,c=2", got
	})
	if got := e.divisions(t); got["apply"] != 1 || got["health"] != 2 {
		t.Fatalf("divisions by cause %v; want apply 1 (the create) and health 2 (b out, b back)", got)
	}
	v, _, _ = e.fed.Store.GetService(ctx, "web")
	if len(v.History) != 3 || v.Revision != 1 {
		t.Fatalf("history %+v at revision %d; want three divisions of revision 1", v.History, v.Revision)
	}
	withEvents, err := e.ctl.Get(ctx, "web", true)
	if err != nil || len(withEvents.GetEvents()) < 3 {
		t.Fatalf("get with events: %v, %v", withEvents, err)
	}

	if err := e.ctl.Delete(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if got := e.shares(t, "web"); got != "" {
		t.Fatalf("after delete the members hold %s", got)
	}
	if _, _, err := e.fed.Store.GetService(ctx, "web"); !errors.Is(err, fedstore.ErrNotFound) {
		t.Fatalf("service still stored after delete: %v", err)
	}
}

// TestCountsAndSelector: explicit counts over the members a selector
// picks; a member taken out of the placement by a change of counts has
// its copy deleted.
func TestCountsAndSelector(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	if _, err := e.ctl.Apply(ctx, service("api", 4, "placement:\n  clusterSelector: {region: eu}\n  counts: {a: 1, b: 3}\n")); err != nil {
		t.Fatal(err)
	}
	if got := e.shares(t, "api"); got != "a=1,b=3" {
		t.Fatalf("member services %s, want a=1,b=3 (c is not in region eu)", got)
	}
	if _, err := e.ctl.Apply(ctx, service("api", 4, "placement:\n  clusterSelector: {region: eu}\n  counts: {a: 4, b: 0}\n")); err != nil {
		t.Fatal(err)
	}
	if got := e.shares(t, "api"); got != "a=4" {
		t.Fatalf("member services %s, want a=4 and none at b", got)
	}
}

func TestApplyRefused(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	tests := []struct {
		name, body, field string
	}{
		{"no placement", string(service("x", 6, "")), "placement"},
		{"unknown cluster", string(service("x", 6, "placement:\n  clusters: [a, z]\n")), "placement.clusters[1]"},
		{"counts not adding up", string(service("x", 6, "placement:\n  clusters: [a, b]\n  counts: {a: 1, b: 1}\n")), "placement.counts"},
		{"weight of a cluster outside", string(service("x", 6, "placement:\n  clusters: [a, b]\n  weights: {c: 1}\n")), "placement.weights.c"},
		{"invalid service", strings.Replace(string(service("x", 6, "placement:\n  clusters: [a]\n")), "replicas: 6", "replicas: -1", 1), "spec.replicas"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.ctl.Apply(ctx, []byte(tc.body))
			var he *httperr.Error
			if !errors.As(err, &he) || len(he.Fields) == 0 || he.Fields[0].Field != tc.field {
				t.Fatalf("apply: %v, want a field error naming %s", err, tc.field)
			}
			if vs, _, err := e.fed.Store.ListServices(ctx); err != nil || len(vs) != 0 {
				t.Fatalf("stored after a refused apply: %+v, %v", vs, err)
			}
			if got := e.shares(t, "x"); got != "" {
				t.Fatalf("members hold %s after a refused apply", got)
			}
		})
	}
}

// memberService is the service as member cluster says.
func (e *env) memberService(t *testing.T, cluster, name string) *persysv1.Service {
	t.Helper()
	m := e.members[cluster]
	v, err := m.Cluster.Client(t, m.Gateway).GetService(context.Background(), name, false)
	if err != nil {
		t.Fatal(err)
	}
	return v.GetService()
}

// TestRolloutVerbs scales a federated service (divided again), pauses and
// resumes its update at every member, and undoes a template change at
// every member; scaling a service placed by exact counts is refused with
// the field named and nothing changed.
func TestRolloutVerbs(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	if _, err := e.ctl.Apply(ctx, service("web", 6, "placement:\n  clusters: [a, b, c]\n")); err != nil {
		t.Fatal(err)
	}
	if got := e.shares(t, "web"); got != "a=2,b=2,c=2" {
		t.Fatalf("shares after apply %s, want a=2,b=2,c=2", got)
	}
	if _, err := e.ctl.Scale(ctx, "web", 9); err != nil {
		t.Fatal(err)
	}
	if got := e.shares(t, "web"); got != "a=3,b=3,c=3" {
		t.Fatalf("shares after scale to 9: %s, want a=3,b=3,c=3", got)
	}
	v, _, err := e.fed.Store.GetService(ctx, "web")
	if err != nil || v.Replicas != 9 || !strings.Contains(string(v.Manifest), `"replicas":9`) {
		t.Fatalf("federated service after scale: %d replicas, manifest %s, %v; want 9 in both", v.Replicas, v.Manifest, err)
	}

	for _, paused := range []bool{true, false} {
		if _, err := e.ctl.SetPaused(ctx, "web", paused); err != nil {
			t.Fatal(err)
		}
		for _, cl := range []string{"a", "b", "c"} {
			if got := e.memberService(t, cl, "web").GetSpec().GetUpdate().GetPaused(); got != paused {
				t.Fatalf("cluster %s: paused = %v, want %v", cl, got, paused)
			}
		}
	}

	if _, err := e.ctl.Apply(ctx, bytes.ReplaceAll(service("web", 9, "placement:\n  clusters: [a, b, c]\n"), []byte("sim/app:1"), []byte("sim/app:2"))); err != nil {
		t.Fatal(err)
	}
	// The member records the new revision asynchronously; undo is
	// refused (no earlier revision known) until it has.
	eventually.Eventually(t, "undo at the members", 60*time.Second, func() (bool, string) {
		_, err := e.ctl.Undo(ctx, "web", 0)
		return err == nil, fmt.Sprint(err)
	})
	for _, cl := range []string{"a", "b", "c"} {
		if got := e.memberService(t, cl, "web").GetSpec().GetTemplate().GetContainer().GetImage(); got != "sim/app:1" {
			t.Fatalf("cluster %s runs image %s after undo, want sim/app:1", cl, got)
		}
	}
	v, _, err = e.fed.Store.GetService(ctx, "web")
	if err != nil || !strings.Contains(string(v.Manifest), "sim/app:1") || v.Replicas != 9 {
		t.Fatalf("federated manifest after undo: %s, %v; want sim/app:1 and 9 replicas", v.Manifest, err)
	}

	if _, err := e.ctl.Apply(ctx, service("exact", 3, "placement:\n  clusters: [a, b]\n  counts: {a: 1, b: 2}\n")); err != nil {
		t.Fatal(err)
	}
	_, err = e.ctl.Scale(ctx, "exact", 5)
	if d := httperr.Detail(err); d.Code != 400 || len(d.Fields) != 1 || d.Fields[0].Field != "replicas" {
		t.Fatalf("scale of a service placed by counts: %v (%+v), want 400 naming replicas", err, d)
	}
	if got := e.shares(t, "exact"); got != "a=1,b=2" {
		t.Fatalf("shares after the refused scale: %s, want a=1,b=2", got)
	}
	if _, err := e.ctl.Scale(ctx, "nowhere", 2); httperr.Detail(err).Code != 404 {
		t.Fatalf("scale of an unknown service: %v, want 404", err)
	}
}

// TestOffloadShares fills a, b and c in order with 6 replicas of which
// each member's one node fits 2: a refuses 4 (no node fits), which go to
// b; b refuses 2, which go to c. The reasons are recorded with the
// division, and each member runs its 2.
func TestOffloadShares(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	// A node offers 4 CPUs, 80% of which may be requested: two of 1500m.
	body := bytes.Replace(service("big", 6, "placement:\n  clusters: [a, b, c]\n  strategy: fill\n  offload: true\n"), []byte("cpu: 100m"), []byte("cpu: 1500m"), 1)
	if _, err := e.ctl.Apply(ctx, body); err != nil {
		t.Fatal(err)
	}
	if got := e.shares(t, "big"); got != "a=6" {
		t.Fatalf("shares after apply %s, want a=6 (fill)", got)
	}
	eventually.Eventually(t, "offloaded to 2/2/2", 90*time.Second, func() (bool, string) {
		if err := e.ctl.Reconcile(ctx); err != nil {
			return false, err.Error()
		}
		got := e.shares(t, "big")
		return got == "a=2,b=2,c=2", got
	})
	v, _, err := e.fed.Store.GetService(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(v.Decision.Reason, "offloaded from a 2 to b, 2 to c") || !strings.Contains(v.Decision.Reason, "no node fits") ||
		v.Caps["a"].Replicas != 2 || v.Caps["b"].Replicas != 2 || !strings.Contains(v.Caps["a"].Reason, "a refused 4") {
		t.Fatalf("decision %q caps %+v; want the offloads and their reasons recorded", v.Decision.Reason, v.Caps)
	}
	eventually.Eventually(t, "2 ready replicas at each member", 60*time.Second, func() (bool, string) {
		if err := e.ctl.Reconcile(ctx); err != nil {
			return false, err.Error()
		}
		var parts []string
		for _, cl := range []string{"a", "b", "c"} {
			m := e.members[cl]
			mv, err := m.Cluster.Client(t, m.Gateway).GetService(ctx, "big", false)
			if err != nil {
				return false, err.Error()
			}
			parts = append(parts, fmt.Sprintf("%s=%d", cl, mv.GetProgress().GetReady()))
		}
		got := strings.Join(parts, ",")
		return got == "a=2,b=2,c=2", got
	})
	if got := e.divisions(t)["offload"]; got < 2 {
		t.Fatalf("offload divisions counted %v, want 2", got)
	}
}

// TestDeleteWhileTheLoopWrites: a delete whose record another writer
// changes between the delete's read and its last write, or deletes
// first, still deletes: no "changed since it was read".
func TestDeleteWhileTheLoopWrites(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	for _, name := range []string{"d1", "d2"} {
		if _, err := e.ctl.Apply(ctx, service(name, 1, "placement:\n  clusters: [a]\n")); err != nil {
			t.Fatal(err)
		}
	}
	var other []error
	for _, name := range []string{"d1", "d2"} {
		e.ctl.SetBeforeRecordDelete(func(name string) {
			e.ctl.SetBeforeRecordDelete(nil) // once
			v, rev, err := e.fed.Store.GetService(ctx, name)
			switch {
			case err != nil:
			case name == "d1":
				_, err = e.fed.Store.PutService(ctx, v, rev)
			default:
				err = e.fed.Store.DeleteService(ctx, name, rev)
			}
			other = append(other, err)
		})
		if err := e.ctl.Delete(ctx, name); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
		if _, _, err := e.fed.Store.GetService(ctx, name); !errors.Is(err, fedstore.ErrNotFound) {
			t.Errorf("%s still stored: %v", name, err)
		}
	}
	if len(other) != 2 || other[0] != nil || other[1] != nil {
		t.Fatalf("the other writes: %v; want two that committed", other)
	}
}
