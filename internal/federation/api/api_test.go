package api_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedtest"
	"github.com/persys-dev/compute/internal/testutil/freeport"
)

// TestJoin joins a real member, then refuses each bad join with the field
// at fault and stores nothing for it.
func TestJoin(t *testing.T) {
	m := fedtest.StartMember(t)
	fed := fedtest.StartFederation(t, 15*time.Second)
	ctx := context.Background()

	good := m.Join(t, "east")
	good.Labels = map[string]string{"region": "eu"}
	got, err := fed.Admin.JoinCluster(ctx, good)
	if err != nil {
		t.Fatalf("join east: %v", err)
	}
	if got.Health.State != fedapi.StateReady || !got.Health.Reachable || got.Health.NodesTotal != 1 || got.Health.LastContact.IsZero() {
		t.Fatalf("joined member health = %+v, want Ready with 1 node", got.Health)
	}
	if got.Identity != "federation (operator)" {
		t.Fatalf("identity = %q", got.Identity)
	}

	expiredCert, expiredKey := m.ExpiredIdentity(t)
	foreignCert, foreignKey := fedtest.OtherIdentity(t)
	with := func(name string, edit func(*fedapi.JoinRequest)) fedapi.JoinRequest {
		r := good
		r.Name = name
		edit(&r)
		return r
	}
	tests := []struct {
		name      string
		req       fedapi.JoinRequest
		code      int
		field     string
		reasonHas string
	}{
		{"duplicate name", with("east", func(*fedapi.JoinRequest) {}), http.StatusConflict, "name", "already a member"},
		{"name not a DNS label", with("East_1", func(*fedapi.JoinRequest) {}), http.StatusBadRequest, "name", "DNS label"},
		{"no name", with("", func(*fedapi.JoinRequest) {}), http.StatusBadRequest, "name", "required"},
		{"gateway not https", with("west", func(r *fedapi.JoinRequest) { r.Gateway = "http://127.0.0.1:1" }), http.StatusBadRequest, "gateway", "https://"},
		{"gateway with a path", with("west", func(r *fedapi.JoinRequest) { r.Gateway += "/v1" }), http.StatusBadRequest, "gateway", "no path"},
		{"gateway not listening", with("west", func(r *fedapi.JoinRequest) { r.Gateway = "https://" + freeport.Addr(t, "127.0.0.1") }), http.StatusBadRequest, "gateway", "cannot reach"},
		{"wrong CA", with("west", func(r *fedapi.JoinRequest) { r.CA = fedtest.OtherCA(t) }), http.StatusBadRequest, "ca", "does not verify"},
		{"CA not PEM", with("west", func(r *fedapi.JoinRequest) { r.CA = "hello" }), http.StatusBadRequest, "ca", ""},
		{"expired identity", with("west", func(r *fedapi.JoinRequest) { r.Cert, r.Key = expiredCert, expiredKey }), http.StatusBadRequest, "cert", "expired"},
		{"identity of another CA", with("west", func(r *fedapi.JoinRequest) { r.Cert, r.Key = foreignCert, foreignKey }), http.StatusBadRequest, "cert", "refused"},
		{"key of another cert", with("west", func(r *fedapi.JoinRequest) { r.Key = foreignKey }), http.StatusBadRequest, "key", ""},
		{"label key not a key", with("west", func(r *fedapi.JoinRequest) { r.Labels = map[string]string{"a b": "x"} }), http.StatusBadRequest, "labels.a b", "label key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fed.Admin.JoinCluster(ctx, tc.req)
			var ae *client.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("join: %v, want an API error", err)
			}
			if ae.Code != tc.code || len(ae.Fields) != 1 || ae.Fields[0].Field != tc.field || !strings.Contains(ae.Fields[0].Reason, tc.reasonHas) {
				t.Fatalf("join answered %d %q %+v, want %d naming %s (%q)", ae.Code, ae.Message, ae.Fields, tc.code, tc.field, tc.reasonHas)
			}
			list, err := fed.Admin.ListClusters(ctx)
			if err != nil || len(list.Clusters) != 1 || list.Clusters[0].Name != "east" || list.Clusters[0].Gateway != good.Gateway {
				t.Fatalf("after a refused join the members are %+v, %v; want east alone, unchanged", list, err)
			}
		})
	}

	// Labels: given at the join, then changed.
	if got.Labels["region"] != "eu" {
		t.Fatalf("labels after join = %v, want region=eu", got.Labels)
	}
	relabelled, err := fed.Admin.LabelCluster(ctx, "east", fedapi.LabelsRequest{Set: map[string]string{"tier": "gold"}, Remove: []string{"region"}})
	if err != nil || len(relabelled.Labels) != 1 || relabelled.Labels["tier"] != "gold" {
		t.Fatalf("label east = %+v, %v; want tier=gold alone", relabelled, err)
	}
	var ae *client.APIError
	if _, err := fed.Admin.LabelCluster(ctx, "east", fedapi.LabelsRequest{Set: map[string]string{"tier": "not ok!"}}); !errors.As(err, &ae) || len(ae.Fields) != 1 || ae.Fields[0].Field != "set.tier" {
		t.Fatalf("invalid label value: %v, want a field error naming set.tier", err)
	}
	if _, err := fed.Admin.LabelCluster(ctx, "nowhere", fedapi.LabelsRequest{Set: map[string]string{"a": "b"}}); !errors.As(err, &ae) || ae.Code != http.StatusNotFound {
		t.Fatalf("labels of an unknown cluster: %v, want 404", err)
	}

	// The member's nodes, named with their cluster.
	nodes, err := fed.Admin.ListNodes(ctx)
	if err != nil || len(nodes.GetNodes()) != 1 || nodes.GetNodes()[0].GetId() != "node-1" || nodes.GetNodes()[0].GetCapabilities().GetLabels()[fedapi.LabelCluster] != "east" {
		t.Fatalf("nodes through the federation: %v, %v; want node-1 of east", nodes, err)
	}

	leave(t, fed)
}

// TestRoles: a federation viewer reads and may not join; a member's own
// admin certificate is refused at the federation's handshake.
func TestRoles(t *testing.T) {
	fed := fedtest.StartFederation(t, 15*time.Second)
	viewer := fed.IssueClient(t, "alice", "viewer")
	ctx := context.Background()
	if _, err := viewer.ListClusters(ctx); err != nil {
		t.Fatalf("viewer list: %v", err)
	}
	var ae *client.APIError
	if _, err := viewer.JoinCluster(ctx, fedapi.JoinRequest{Name: "x"}); !errors.As(err, &ae) || ae.Code != http.StatusForbidden {
		t.Fatalf("viewer join: %v, want 403", err)
	}
}

// leave: an unknown member is not found; a member holding a federated
// workload does not leave until the workload is deleted; events record it.
func leave(t *testing.T, fed *fedtest.Federation) {
	t.Helper()
	ctx := context.Background()
	if err := fed.Admin.LeaveCluster(ctx, "nowhere"); !client.IsNotFound(err) {
		t.Fatalf("leave of an unknown cluster: %v, want 404", err)
	}
	// A member that holds a federated workload does not leave.
	wl := "apiVersion: persys/v1\nkind: Workload\nmetadata:\n  name: w1\nspec:\n  type: container\n  container:\n    image: sim/app:1\nplacement:\n  clusters: [east]\n"
	if resp, err := fed.Admin.Apply(ctx, []byte(wl)); err != nil || resp.GetWorkload().GetWorkload().GetLabels()[fedapi.LabelCluster] != "east" {
		t.Fatalf("apply w1 through the federation: %v, %v", resp, err)
	}
	for cluster, want := range map[string]int{"east": 1, "west": 0} {
		l, err := fed.Admin.ListWorkloadsSelector(ctx, map[string]string{fedapi.LabelCluster: cluster})
		if err != nil || len(l.GetWorkloads()) != want {
			t.Fatalf("workloads on %s: %v, %v; want %d", cluster, l, err, want)
		}
	}
	var held *client.APIError
	if err := fed.Admin.LeaveCluster(ctx, "east"); !errors.As(err, &held) || held.Code != http.StatusConflict || !strings.Contains(held.Fields[0].Reason, "w1") {
		t.Fatalf("leave of a member holding w1: %v, want 409 naming w1", err)
	}
	if err := fed.Admin.DeleteWorkload(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	if err := fed.Admin.LeaveCluster(ctx, "east"); err != nil {
		t.Fatal(err)
	}
	evs, err := fed.Admin.ClusterEvents(ctx, "east", 0)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range evs.Events {
		types = append(types, e.Type)
	}
	if !slices.Equal(types, []string{fedapi.EventJoined, fedapi.EventPlaced, fedapi.EventLeft}) {
		t.Fatalf("events of east = %v; want joined, placed, left", types)
	}
}
