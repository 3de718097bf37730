package api_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedtest"
)

// TestGetNode finds one node through the federation: by CLUSTER/NODE, by
// an id one member has, and refuses an id two members share (naming
// both), an unknown node and an unknown cluster.
func TestGetNode(t *testing.T) {
	fed := fedtest.StartFederation(t, 15*time.Second)
	ctx := context.Background()
	east, west := fedtest.StartMember(t), fedtest.StartMember(t) // each with node-1
	if _, err := fed.Admin.JoinCluster(ctx, east.Join(t, "east")); err != nil {
		t.Fatal(err)
	}
	n, err := fed.Admin.GetNode(ctx, "node-1")
	if err != nil || n.GetId() != "node-1" || n.GetCapabilities().GetLabels()[fedapi.LabelCluster] != "east" {
		t.Fatalf("node-1 with east alone: %v, %v; want east's", n, err)
	}
	if _, err := fed.Admin.JoinCluster(ctx, west.Join(t, "west")); err != nil {
		t.Fatal(err)
	}
	n, err = fed.Admin.GetNode(ctx, "west/node-1")
	if err != nil || n.GetId() != "node-1" || n.GetCapabilities().GetLabels()[fedapi.LabelCluster] != "west" {
		t.Fatalf("west/node-1: %v, %v; want west's node-1", n, err)
	}
	tests := []struct {
		name, id string
		code     int
		has      []string
	}{
		{"shared id", "node-1", 409, []string{"east/node-1", "west/node-1"}},
		{"unknown node", "node-9", 404, []string{"node-9"}},
		{"unknown node of a member", "east/node-9", 404, []string{"node-9"}},
		{"unknown cluster", "north/node-1", 404, []string{"north"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fed.Admin.GetNode(ctx, tc.id)
			var ae *client.APIError
			if !errors.As(err, &ae) || ae.Code != tc.code || len(ae.Fields) != 1 || ae.Fields[0].Field != "id" {
				t.Fatalf("get node %s: %v, want %d naming id", tc.id, err, tc.code)
			}
			for _, h := range tc.has {
				if !strings.Contains(ae.Message, h) {
					t.Fatalf("get node %s: %q, want it to name %s", tc.id, ae.Message, h)
				}
			}
		})
	}
}
