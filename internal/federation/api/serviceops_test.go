package api_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/federation/fedtest"
	"github.com/persys-dev/compute/internal/pki"
)

// TestServiceVerbs drives scale and rollout pause/resume through the
// federation's routes with persysctl's client, as the verbs of persysctl
// do, and sees them at the member; a viewer may not, and an unknown
// service is 404.
func TestServiceVerbs(t *testing.T) {
	fed := fedtest.StartFederation(t, 15*time.Second)
	ctx := context.Background()
	m := fedtest.StartMember(t)
	if _, err := fed.Admin.JoinCluster(ctx, m.Join(t, "east")); err != nil {
		t.Fatal(err)
	}
	body := []byte("apiVersion: persys/v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  template:\n    type: container\n" +
		"    desiredState: running\n    container:\n      image: sim/app:1\n    resources:\n      cpu: 10m\n      memory: 8Mi\nplacement:\n  clusters: [east]\n")
	if _, err := fed.Admin.ApplyService(ctx, body); err != nil {
		t.Fatal(err)
	}
	member := m.Cluster.Client(t, m.Gateway)
	v, err := fed.Admin.ScaleService(ctx, "web", 3)
	if err != nil {
		t.Fatal(err)
	}
	mv, err := member.GetService(ctx, "web", false)
	if err != nil || mv.GetService().GetSpec().GetReplicas() != 3 || v.GetService().GetSpec().GetReplicas() != 3 {
		t.Fatalf("after scale to 3: member %v (%v), federation %v; want 3 at both", mv.GetService().GetSpec(), err, v.GetService().GetSpec())
	}
	for _, op := range []string{client.RolloutPause, client.RolloutResume} {
		if _, err := fed.Admin.RolloutOp(ctx, "web", op); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		mv, err := member.GetService(ctx, "web", false)
		if err != nil || mv.GetService().GetSpec().GetUpdate().GetPaused() != (op == client.RolloutPause) {
			t.Fatalf("after %s the member's update is %v (%v)", op, mv.GetService().GetSpec().GetUpdate(), err)
		}
	}
	var ae *client.APIError
	viewer := fed.IssueClient(t, "viewer", pki.RoleViewer)
	if _, err := viewer.ScaleService(ctx, "web", 1); !errors.As(err, &ae) || ae.Code != 403 {
		t.Fatalf("scale by a viewer: %v, want 403", err)
	}
	if _, err := fed.Admin.ScaleService(ctx, "nowhere", 1); !errors.As(err, &ae) || ae.Code != 404 {
		t.Fatalf("scale of an unknown service: %v, want 404", err)
	}
	if _, err := fed.Admin.ScaleService(ctx, "web", -1); !errors.As(err, &ae) || ae.Code != 400 || len(ae.Fields) != 1 || ae.Fields[0].Field != "replicas" {
		t.Fatalf("scale to -1: %v, want 400 naming replicas", err)
	}
}
